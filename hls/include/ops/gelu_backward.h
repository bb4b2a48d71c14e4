// Backward of OP_GELU (reference ops_backward.gelu_backward): dx = dy gelu'(x), gelu' from the
// gelu_grad table inside [-8, 8], 1 above 8 and 0 below -8; dx at fdy + 16, dynamic. The knots
// are copied into the forward's table replicas first (gelu.h), so VU_LANES lookups a cycle
// each read their own dual-port copy.
#ifndef TRILEVEL_OPS_GELU_BACKWARD_H
#define TRILEVEL_OPS_GELU_BACKWARD_H

#include "../desc.h"
#include "../memory.h"
#include "gelu.h"
#include "grad_format.h"

/// gelu'(x) at 16 fractional bits for x already at the table's 14 input bits; even/odd: the
/// lane's replica of the gelu_grad knots (pwl_eval of fixed.h with the knots split by parity).
inline wide_t gelu_grad_at(const knot_t even[TAB_HALF], const knot_t odd[TAB_HALF], wide_t xi) {
#pragma HLS INLINE
    const wide_t lo = wide_t(LUT_GELU_GRAD_LO) << LUT_GELU_GRAD_IN_FRAC;
    const wide_t hi = wide_t(LUT_GELU_GRAD_HI) << LUT_GELU_GRAD_IN_FRAC;
    if (xi > hi) return wide_t(1) << LUT_GELU_GRAD_OUT_FRAC;
    if (xi < lo) return 0;
    const int s = LUT_GELU_GRAD_IN_FRAC - LUT_GELU_GRAD_STEP_BITS;
    const wide_t u = xi - lo;
    const int i = int(u >> s);
    const wide_t r = u & ((wide_t(1) << s) - 1);
    const wide_t e = even[(i + 1) >> 1], o = odd[i >> 1];  // knots i and i + 1, in some order
    const wide_t t0 = (i & 1) ? o : e, t1 = (i & 1) ? e : o;
    return t0 + rshift_round((t1 - t0) * r, s);
}

/// OP_GELU_BWD.
/// X:  dy (M, N) int16, row stride XS, format from slot F0.
/// W:  x, the forward's input (M, N) int16, row stride WS, at SH0 = fx.
/// Y:  dx (M, N) int16, row stride YS, dynamic format -> slot F1.   AUX3: format table.
inline ap_uint<32> op_gelu_bwd(word_t* mem, ap_uint<32> mem_bytes, const Desc& d, const Luts& L,
                               EngineBuffers& buf) {
    const int M = int(d.u(DW_M));
    const int N = int(d.u(DW_N));
    const int fx = d.s(DW_SH0);
    if (M < 1 || M > CFG_MAX_TOKENS || N < 1 || N > CFG_MAX_HIDDEN) return ST_BAD_SIZE;
    if (!frac_ok(fx)) return ST_BAD_PARAM;
    if (!tensor_ok(d.u(DW_X), M, d.u(DW_XS), N, 2, mem_bytes) ||
        !tensor_ok(d.u(DW_W), M, d.u(DW_WS), N, 2, mem_bytes) ||
        !tensor_ok(d.u(DW_Y), M, d.u(DW_YS), N, 2, mem_bytes) || !fmt_table_ok(d, mem_bytes))
        return ST_BAD_ADDRESS;
    const int fdy = fmt_read(mem, d, 0);
    if (!frac_ok(fdy)) return ST_BAD_PARAM;
    const int facc = fdy + LUT_GELU_GRAD_OUT_FRAC;
    const int sx = fx - LUT_GELU_GRAD_IN_FRAC;

    knot_t(&tab)[TAB_COPIES][2][TAB_HALF] = buf.tab;
    gelu_copy_table(L.gelu_grad, LUT_GELU_GRAD_KNOTS, CNT_GB_TABLE, tab);
    q16_t dy[CFG_MAX_HIDDEN], x[CFG_MAX_HIDDEN], out[CFG_MAX_HIDDEN];
#pragma HLS ARRAY_PARTITION variable = dy cyclic factor = CFG_VU_LANES dim = 1
#pragma HLS ARRAY_PARTITION variable = x cyclic factor = CFG_VU_LANES dim = 1
#pragma HLS ARRAY_PARTITION variable = out cyclic factor = CFG_VU_LANES dim = 1
    const int groups = (N + CFG_VU_LANES - 1) / CFG_VU_LANES;
    wide_t mx = 0;
    int f = ABI_FRAC_MAX, shift = 0;
GB_PASS:
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            f = dynamic_frac(mx, facc);
            shift = requant_shift(facc, f);
        }
    GB_ROWS:
        for (int i = 0; i < M; i++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
            load_i16<CFG_MAX_HIDDEN>(mem, d.u(DW_X) + ap_uint<32>(i) * d.u(DW_XS) * 2, N, dy);
            load_i16<CFG_MAX_HIDDEN>(mem, d.u(DW_W) + ap_uint<32>(i) * d.u(DW_WS) * 2, N, x);
            SIM_LOOP(pass == 0 ? CNT_GB_ELEMS_MAXP : CNT_GB_ELEMS, groups);
        GB_ELEMS:  // VU_LANES elements per cycle, lane l reads replica l / 2 (two lanes per
                   // dual-port copy, knots i and i + 1 from its two parity banks); the pass-0
                   // maximum is a comparator tree and one carried compare-select: II=1
            for (int k0 = 0; k0 < N; k0 += CFG_VU_LANES) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_HIDDEN / CFG_VU_LANES
                for (int l = 0; l < CFG_VU_LANES; l++) {
                    const int k = k0 + l;
                    if (k < N) {
                        const int c = l / 2;
                        const wide_t acc = wide_t(dy[k]) * gelu_grad_at(tab[c][0], tab[c][1], rshift_round(x[k], sx));
                        if (pass == 0)
                            mx = max_abs(mx, acc);
                        else
                            out[k] = sat16(rshift_round(acc, shift));
                    }
                }
            }
            if (pass == 1) store_i16<CFG_MAX_HIDDEN>(mem, d.u(DW_Y) + ap_uint<32>(i) * d.u(DW_YS) * 2, N, out);
        }
    }
    fmt_write(mem, d, 1, f);
    return ST_DONE;
}

#endif
