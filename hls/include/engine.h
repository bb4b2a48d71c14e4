// The synthesizable top of the engine: one start walks a descriptor list in the arena.
#ifndef TRILEVEL_ENGINE_H
#define TRILEVEL_ENGINE_H

#include "fixed.h"

/// mem:       the arena (read/write port gmem_a: activations, outputs, descriptors).
/// wmem:      the same arena through a second read port (gmem_w: weight streams), so weight
///            bursts overlap activation traffic. The host points both at the arena's base.
/// mem_bytes: arena size; every tensor a descriptor names must lie inside it.
/// prog:      byte offset of the descriptor list; n_desc its length.
/// status:    ST_DONE after the last descriptor, else the ST_* error of the op that stopped.
/// err_tag:   DW_TAG of the descriptor that stopped the walk (0 on success).
void trilevel_engine(word_t* mem, const word_t* wmem, ap_uint<32> mem_bytes, ap_uint<32> prog,
                     ap_uint<32> n_desc, ap_uint<32>& status, ap_uint<32>& err_tag);

#endif
