// OP_LINEAR: NOT IMPLEMENTED YET (placeholder so the walker builds; replaced by the real op).
#ifndef TRILEVEL_OPS_LINEAR_H
#define TRILEVEL_OPS_LINEAR_H

#include "../desc.h"
#include "../memory.h"

inline ap_uint<32> op_linear(word_t* mem, const word_t* wmem, ap_uint<32> mem_bytes, const Desc& d) { return ST_BAD_OPCODE; }

#endif
