// OP_ATTENTION: NOT IMPLEMENTED YET (placeholder so the walker builds; replaced by the real op).
#ifndef TRILEVEL_OPS_ATTENTION_H
#define TRILEVEL_OPS_ATTENTION_H

#include "../desc.h"
#include "../memory.h"

inline ap_uint<32> op_attention(word_t* mem, ap_uint<32> mem_bytes, const Desc& d, const Luts& L) { return ST_BAD_OPCODE; }

#endif
