// OP_LOAD_LUT: copy one table's knots (int32, from the model package) into on-chip memory.
#ifndef TRILEVEL_OPS_LUT_LOAD_H
#define TRILEVEL_OPS_LUT_LOAD_H

#include "../desc.h"
#include "../memory.h"

/// X: N int32 knots; P0: table id (LUT_*). N must equal that table's knot count.
inline ap_uint<32> op_load_lut(const word_t* mem, ap_uint<32> mem_bytes, const Desc& d, Luts& L) {
    const int id = int(d.u(DW_P0));
    const int n = int(d.u(DW_N));
    static const int knots[LUT_COUNT] = {LUT_EXP_KNOTS, LUT_GELU_KNOTS, LUT_GELU_GRAD_KNOTS, LUT_RECIP_KNOTS,
                                         LUT_RSQRT_KNOTS};
    if (id < 0 || id >= LUT_COUNT) return ST_BAD_PARAM;
    if (n != knots[id]) return ST_BAD_SIZE;
    if (!tensor_ok(d.u(DW_X), 1, n, n, 4, mem_bytes)) return ST_BAD_ADDRESS;
    i32_t buf[LUT_MAX_KNOTS];
    load_i32<LUT_MAX_KNOTS>(mem, d.u(DW_X), n, buf);
LUT_COPY:
    for (int i = 0; i < n; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 258 max = 2050
        knot_t v = buf[i];
        if (id == LUT_EXP) L.exp_t[i] = v;
        else if (id == LUT_GELU) L.gelu[i] = v;
        else if (id == LUT_GELU_GRAD) L.gelu_grad[i] = v;
        else if (id == LUT_RECIP) L.recip[i] = v;
        else L.rsqrt[i] = v;
    }
    return ST_DONE;
}

#endif
