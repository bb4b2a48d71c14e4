// OP_ADD: Y = sat16(rshift_round((X << -SH0) + (W << -SH1), SH2)), element by element.
//
// The residual adds and the [CLS]/position-embedding adds. Both operands are aligned to the
// finer of their two formats (f = max(fa, fb), so both shifts are exact left shifts), summed
// exactly in 64 bits and rounded once to fy (reference ops_forward.add). Row by row on the
// vector unit: X through gmem_a, W through the weight port (a position embedding is a
// parameter), CFG_VU_LANES sums per cycle. Y may be X or W (in place): a row is read whole
// before it is written.
#ifndef TRILEVEL_OPS_ADD_H
#define TRILEVEL_OPS_ADD_H

#include "../buffers.h"
#include "../desc.h"
#include "../memory.h"

/// X (M, N) int16 at fa, row stride XS; W (M, N) int16 at fb, row stride WS; Y (M, N) int16
/// at fy, row stride YS. SH0 = fa - f <= 0, SH1 = fb - f <= 0, SH2 = f - fy.
/// M <= CFG_MAX_TOKENS, N <= CFG_MAX_OUT.
inline ap_uint<32> op_add(word_t* mem, const word_t* wmem, ap_uint<32> mem_bytes, const Desc& d, EngineBuffers& buf) {
    const ap_uint<32> m_u = d.u(DW_M), n_u = d.u(DW_N);
    if (m_u == 0 || m_u > CFG_MAX_TOKENS || n_u == 0 || n_u > CFG_MAX_OUT) return ST_BAD_SIZE;
    const int m = int(m_u), n = int(n_u);
    const int sh0 = d.s(DW_SH0), sh1 = d.s(DW_SH1), sh2 = d.s(DW_SH2);
    if (sh0 > 0 || sh1 > 0) return ST_BAD_PARAM;  // both operands align by exact left shifts
    if (!tensor_ok(d.u(DW_X), m, d.u(DW_XS), n, 2, mem_bytes) ||
        !tensor_ok(d.u(DW_W), m, d.u(DW_WS), n, 2, mem_bytes) || !tensor_ok(d.u(DW_Y), m, d.u(DW_YS), n, 2, mem_bytes))
        return ST_BAD_ADDRESS;
    const addr_t x_addr = d.u(DW_X), w_addr = d.u(DW_W), y_addr = d.u(DW_Y);
    const addr_t xs = d.u(DW_XS), ws = d.u(DW_WS), ys = d.u(DW_YS);

    vrow_t &a = buf.vrow[0], &b = buf.vrow[1], &y = buf.vrow[2];  // the vector rows (buffers.h)
    const int groups = (n + CFG_VU_LANES - 1) / CFG_VU_LANES;
ADD_ROWS:
    for (int r = 0; r < m; r++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
        load_i16<CFG_MAX_OUT>(mem, x_addr + addr_t(r) * xs * 2, n, a);
        load_i16<CFG_MAX_OUT>(wmem, w_addr + addr_t(r) * ws * 2, n, b);
        // II=1: a, b, y are cyclic-partitioned by VU_LANES, so the VU_LANES consecutive
        // elements of a group are in distinct banks; elements are independent (no carried
        // dependence). One iteration: VU_LANES sums.
        SIM_LOOP(CNT_ADD, groups);
    ADD:
        for (int g = 0; g < groups; g++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_OUT / CFG_VU_LANES
        ADD_LANES:
            for (int l = 0; l < CFG_VU_LANES; l++) {
                const int i = g * CFG_VU_LANES + l;
                if (i < n) y[i] = requant(rshift_round(wide_t(a[i]), sh0) + rshift_round(wide_t(b[i]), sh1), sh2);
            }
        }
        store_i16<CFG_MAX_OUT>(mem, y_addr + addr_t(r) * ys * 2, n, y);
    }
    return ST_DONE;
}

#endif
