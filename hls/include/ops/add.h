// OP_ADD: NOT IMPLEMENTED YET (placeholder so the walker builds; replaced by the real op).
#ifndef TRILEVEL_OPS_ADD_H
#define TRILEVEL_OPS_ADD_H

#include "../desc.h"
#include "../memory.h"

inline ap_uint<32> op_add(word_t* mem, const word_t* wmem, ap_uint<32> mem_bytes, const Desc& d) { return ST_BAD_OPCODE; }

#endif
