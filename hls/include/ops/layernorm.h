// OP_LAYERNORM: NOT IMPLEMENTED YET (placeholder so the walker builds; replaced by the real op).
#ifndef TRILEVEL_OPS_LAYERNORM_H
#define TRILEVEL_OPS_LAYERNORM_H

#include "../desc.h"
#include "../memory.h"

inline ap_uint<32> op_layernorm(word_t* mem, const word_t* wmem, ap_uint<32> mem_bytes, const Desc& d, const Luts& L) { return ST_BAD_OPCODE; }

#endif
