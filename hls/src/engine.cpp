// The engine's top function: interfaces, the descriptor walker and the dispatch to the ops.
//
// Layer-wise, like the paper's prototype: the host writes one descriptor list into the
// arena, starts the engine once, and the walker runs the ops in order. An op first checks
// its descriptor (sizes against config.h, every tensor inside the arena, shifts in range)
// and returns an ST_* error before it touches memory; the walk stops at the first error
// and reports the op's tag.
#include "engine.h"

#include "buffers.h"
#include "counters.h"
#include "desc.h"
#include "memory.h"
#include "ops/add.h"
#include "ops/attention.h"
#include "ops/gather.h"
#include "ops/gelu.h"
#include "ops/layernorm.h"
#include "ops/linear.h"
#include "ops/lut_load.h"
#include "ops/patchify.h"
#include "ops/select.h"
#include "ops/attention_backward.h"
#include "ops/grad_add.h"
#include "ops/grad_requant.h"
#include "ops/loss.h"
#include "ops/sgd.h"

#ifndef __SYNTHESIS__
SimCounters g_sim_counters;
#endif

static ap_uint<32> dispatch(word_t* mem, const word_t* wmem, ap_uint<32> mem_bytes, const Desc& d, Luts& luts,
                            EngineBuffers& buf) {
    if (!shifts_ok(d)) return ST_BAD_PARAM;
    switch (int(d.opcode())) {
        case OP_NOP: return ST_DONE;
        case OP_LOAD_LUT: return op_load_lut(mem, mem_bytes, d, luts);
        case OP_LINEAR: return op_linear(mem, wmem, mem_bytes, d, buf);
        case OP_PATCHIFY: return op_patchify(mem, mem_bytes, d);
        case OP_ADD: return op_add(mem, wmem, mem_bytes, d, buf);
        case OP_LAYERNORM: return op_layernorm(mem, wmem, mem_bytes, d, luts, buf);
        case OP_GELU: return op_gelu(mem, mem_bytes, d, luts, buf);
        case OP_ATTENTION: return op_attention(mem, mem_bytes, d, luts, buf);
        case OP_SELECT: return op_select(mem, mem_bytes, d);
        case OP_GATHER: return op_gather(mem, mem_bytes, d);
        case OP_CE_GRAD: return op_ce_grad(mem, mem_bytes, d, luts, buf);
        case OP_LINEAR_BWD_DX: return op_linear_bwd_dx(mem, wmem, mem_bytes, d, buf);
        case OP_LINEAR_BWD_DW: return op_linear_bwd_dw(mem, mem_bytes, d, buf);
        case OP_LAYERNORM_BWD: return op_layernorm_bwd(mem, wmem, mem_bytes, d, buf);
        case OP_GELU_BWD: return op_gelu_bwd(mem, mem_bytes, d, luts, buf);
        case OP_ATTENTION_BWD: return op_attention_bwd(mem, mem_bytes, d, buf);
        case OP_GRAD_ADD: return op_grad_add(mem, mem_bytes, d, buf);
        case OP_SCATTER: return op_scatter(mem, mem_bytes, d, buf);
        case OP_GRAD_REQUANT: return op_grad_requant(mem, mem_bytes, d, buf);
        case OP_SGD: return op_sgd(mem, mem_bytes, d, buf);
        default: return ST_BAD_OPCODE;
    }
}

void trilevel_engine(word_t* mem, const word_t* wmem, ap_uint<32> mem_bytes, ap_uint<32> prog,
                     ap_uint<32> n_desc, ap_uint<32>& status, ap_uint<32>& err_tag) {
    // Two AXI4 masters on the HP ports (one read/write for activations, one read-only for
    // weight streams), both offset=slave: their base addresses are AXI-Lite registers.
#pragma HLS INTERFACE m_axi port = mem offset = slave bundle = gmem_a depth = 65536 max_read_burst_length = 64 max_write_burst_length = 64 num_read_outstanding = 8 num_write_outstanding = 8
#pragma HLS INTERFACE m_axi port = wmem offset = slave bundle = gmem_w depth = 65536 max_read_burst_length = 64 num_read_outstanding = 16
#pragma HLS INTERFACE s_axilite port = mem bundle = control
#pragma HLS INTERFACE s_axilite port = wmem bundle = control
#pragma HLS INTERFACE s_axilite port = mem_bytes bundle = control
#pragma HLS INTERFACE s_axilite port = prog bundle = control
#pragma HLS INTERFACE s_axilite port = n_desc bundle = control
#pragma HLS INTERFACE s_axilite port = status bundle = control
#pragma HLS INTERFACE s_axilite port = err_tag bundle = control
#pragma HLS INTERFACE s_axilite port = return bundle = control
    // One multiplier array for every matmul of every op, and one set of matrix-core lane
    // adders (mac_array.h).
#pragma HLS ALLOCATION function instances = mac_products limit = 1
#pragma HLS ALLOCATION function instances = mc_accumulate limit = 1
    // The tables stay on chip between starts: a package loads them once (OP_LOAD_LUT).
    static Luts luts;
    // The on-chip memories every op shares (buffers.h), one instance: ops run one at a time.
    // The partitions serve every op that uses a memory (the comments in buffers.h say how);
    // the ops repeat them on their array arguments.
    static EngineBuffers buf;
#pragma HLS ARRAY_PARTITION variable = buf.xpanel complete dim = 1
#pragma HLS ARRAY_PARTITION variable = buf.tok complete dim = 1
#pragma HLS ARRAY_PARTITION variable = buf.tok complete dim = 3
#pragma HLS ARRAY_PARTITION variable = buf.mc_acc complete dim = 0
#pragma HLS ARRAY_PARTITION variable = buf.tab complete dim = 1
#pragma HLS ARRAY_PARTITION variable = buf.tab complete dim = 2
#pragma HLS ARRAY_PARTITION variable = buf.vrow complete dim = 1
#pragma HLS ARRAY_PARTITION variable = buf.vrow cyclic factor = CFG_VU_LANES dim = 2
#pragma HLS ARRAY_PARTITION variable = buf.vrow32 complete dim = 1
#pragma HLS ARRAY_PARTITION variable = buf.vrow32 cyclic factor = CFG_VU_LANES dim = 2
#pragma HLS ARRAY_PARTITION variable = buf.vwide cyclic factor = CFG_VU_LANES dim = 1
    err_tag = 0;
    if (n_desc == 0 || n_desc > CFG_MAX_DESCRIPTORS || !tensor_ok(prog, n_desc, DESC_WORDS, DESC_WORDS, 4, mem_bytes)) {
        status = ST_BAD_PROGRAM;
        return;
    }
DESC_WALK:
    for (ap_uint<32> i = 0; i < n_desc; i++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 600
        Desc d;
        fetch_desc(mem, prog, i, d);
        ap_uint<32> st = dispatch(mem, wmem, mem_bytes, d, luts, buf);
        if (st != ST_DONE) {
            status = st;
            err_tag = d.u(DW_TAG);
            return;
        }
    }
    status = ST_DONE;
}
