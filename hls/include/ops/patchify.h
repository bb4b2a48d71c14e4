// OP_PATCHIFY: NOT IMPLEMENTED YET (placeholder so the walker builds; replaced by the real op).
#ifndef TRILEVEL_OPS_PATCHIFY_H
#define TRILEVEL_OPS_PATCHIFY_H

#include "../desc.h"
#include "../memory.h"

inline ap_uint<32> op_patchify(word_t* mem, ap_uint<32> mem_bytes, const Desc& d) { return ST_BAD_OPCODE; }

#endif
