// OP_SELECT: NOT IMPLEMENTED YET (placeholder so the walker builds; replaced by the real op).
#ifndef TRILEVEL_OPS_SELECT_H
#define TRILEVEL_OPS_SELECT_H

#include "../desc.h"
#include "../memory.h"

inline ap_uint<32> op_select(word_t* mem, ap_uint<32> mem_bytes, const Desc& d) { return ST_BAD_OPCODE; }

#endif
