// OP_GELU: Y = gelu(X) by the piecewise-linear table on [-8, 8] (reference ops_forward.gelu).
//
// xi = rshift_round(x, SH0) at the table's 14 fractional bits; inside [-8, 8] the output is
// rshift_round(T_gelu(xi), SH1), above 8 the input passes (rshift_round(x, SH2)), below -8 it
// is 0; saturated to 16 bits.
//
// CFG_VU_LANES lookups per cycle need VU_LANES table reads of two adjacent knots each. The
// shared table (Luts::gelu, one BRAM) cannot serve that, so the op first copies the knots
// into VU_LANES/2 of the engine's table replicas (EngineBuffers::tab, which the attention's
// exp and the GELU backward's gelu' tables use in turn), each split into even and odd knots: a
// lookup of segment i reads knot i from one parity bank and knot i+1 from the other, and a
// dual-port bank serves two lanes. The copy costs LUT_GELU_KNOTS cycles per op; estimate: the
// GELU of a DeiT-S fc1 output (197 x 1536) takes about 95k cycles (per row 192 beats in, 96
// groups, 192 beats out).
//
// The backward (OP_GELU_BWD, on the same table replicas) follows the forward below.
#ifndef TRILEVEL_OPS_GELU_H
#define TRILEVEL_OPS_GELU_H

#include "../buffers.h"
#include "../desc.h"
#include "../memory.h"
#include "grad_format.h"

static const int GELU_REPLICAS = TAB_VU_COPIES;  // two lanes per dual-port replica
static_assert(LUT_GELU_KNOTS <= 2 * TAB_HALF && LUT_GELU_GRAD_KNOTS <= 2 * TAB_HALF, "the GELU tables fit a replica");

/// Copies `n` knots of table t into the first GELU_REPLICAS table replicas, split by parity.
/// II=1: one read of t and one write into one bank of each replica per cycle. One iteration:
/// knot i into every replica.
inline void gelu_copy_table(const knot_t* t, int n, int cnt, knot_t tab[TAB_COPIES][2][TAB_HALF]) {
    SIM_LOOP(cnt, n);
GELU_TABLE:
    for (int i = 0; i < n; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = LUT_GELU_KNOTS max = LUT_GELU_KNOTS
        const knot_t v = t[i];
    GELU_TABLE_REPLICAS:
        for (int c = 0; c < GELU_REPLICAS; c++) tab[c][i & 1][i >> 1] = v;
    }
}

/// One GELU output before saturation. x: int16 at fx; even/odd: the lane's replica (knots 2i, 2i+1).
inline wide_t gelu_lane(q16_t x, const knot_t even[TAB_HALF], const knot_t odd[TAB_HALF], int sh0, int sh1, int sh2) {
#pragma HLS INLINE
    const wide_t lo_i = wide_t(LUT_GELU_LO) << LUT_GELU_IN_FRAC;
    const wide_t hi_i = wide_t(LUT_GELU_HI) << LUT_GELU_IN_FRAC;
    const wide_t xi = rshift_round(wide_t(x), sh0);
    // luts.pwl on xi clamped to [lo, hi] (the clamp keeps the knot index in range in hardware,
    // where all three results are computed): u = xc - lo; i = u >> s; r = u mod 2^s;
    // T = t[i] + rshift_round((t[i+1] - t[i]) r, s)
    const wide_t xc = xi < lo_i ? lo_i : (xi > hi_i ? hi_i : xi);
    const int s = LUT_GELU_IN_FRAC - LUT_GELU_STEP_BITS;
    const wide_t u = xc - lo_i;
    const int i = int(u >> s);
    const wide_t r = u & ((wide_t(1) << s) - 1);
    const wide_t e = even[(i + 1) >> 1];  // the even knot of {i, i+1}
    const wide_t o = odd[i >> 1];         // the odd knot of {i, i+1}
    const wide_t t0 = (i & 1) ? o : e;
    const wide_t t1 = (i & 1) ? e : o;
    const wide_t y_tab = rshift_round(t0 + rshift_round((t1 - t0) * r, s), sh1);
    if (xi > hi_i) return rshift_round(wide_t(x), sh2);  // pass-through above 8
    if (xi < lo_i) return 0;                             // 0 below -8
    return y_tab;
}

/// X (M, N) int16 at fx, row stride XS; Y (M, N) int16 at fy, row stride YS.
/// SH0 = fx - 14, SH1 = 16 - fy, SH2 = fx - fy. M <= CFG_MAX_TOKENS, N <= CFG_MAX_HIDDEN.
inline ap_uint<32> op_gelu(word_t* mem, ap_uint<32> mem_bytes, const Desc& d, const Luts& L, EngineBuffers& buf) {
    const ap_uint<32> m_u = d.u(DW_M), n_u = d.u(DW_N);
    if (m_u == 0 || m_u > CFG_MAX_TOKENS || n_u == 0 || n_u > CFG_MAX_HIDDEN) return ST_BAD_SIZE;
    const int m = int(m_u), n = int(n_u);
    if (!tensor_ok(d.u(DW_X), m, d.u(DW_XS), n, 2, mem_bytes) || !tensor_ok(d.u(DW_Y), m, d.u(DW_YS), n, 2, mem_bytes))
        return ST_BAD_ADDRESS;
    const int sh0 = d.s(DW_SH0), sh1 = d.s(DW_SH1), sh2 = d.s(DW_SH2);
    const addr_t x_addr = d.u(DW_X), y_addr = d.u(DW_Y);
    const addr_t xs = d.u(DW_XS), ys = d.u(DW_YS);

    knot_t(&tab)[TAB_COPIES][2][TAB_HALF] = buf.tab;
    gelu_copy_table(L.gelu, LUT_GELU_KNOTS, CNT_GELU_TABLE, tab);

    vrow_t &x = buf.vrow[0], &y = buf.vrow[1];  // the vector rows (buffers.h)
    const int groups = (n + CFG_VU_LANES - 1) / CFG_VU_LANES;
GELU_ROWS:
    for (int r = 0; r < m; r++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
        load_i16<CFG_MAX_HIDDEN>(mem, x_addr + addr_t(r) * xs * 2, n, x);
        // II=1: x and y are cyclic-partitioned by VU_LANES (distinct banks per group); lane l
        // reads replica l/2, whose two parity banks each see two reads per cycle (one per
        // lane of the pair) on their two ports. No carried dependence. One iteration:
        // VU_LANES outputs.
        SIM_LOOP(CNT_GELU, groups);
    GELU:
        for (int g = 0; g < groups; g++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_HIDDEN / CFG_VU_LANES
        GELU_LANES:
            for (int l = 0; l < CFG_VU_LANES; l++) {
                const int i = g * CFG_VU_LANES + l;
                const int c = l / 2;
                if (i < n) y[i] = sat16(gelu_lane(x[i], tab[c][0], tab[c][1], sh0, sh1, sh2));
            }
        }
        store_i16<CFG_MAX_HIDDEN>(mem, y_addr + addr_t(r) * ys * 2, n, y);
    }
    return ST_DONE;
}

// ---------------------------------------------------------------- backward

// Backward of OP_GELU (reference ops_backward.gelu_backward): dx = dy gelu'(x), gelu' from the
// gelu_grad table inside [-8, 8], 1 above 8 and 0 below -8; dx at fdy + 16, dynamic. The knots
// are copied into the forward's table replicas first (gelu_copy_table), so VU_LANES lookups a cycle
// each read their own dual-port copy.

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
    vrow_t &dy = buf.vrow[0], &x = buf.vrow[1], &out = buf.vrow[2];  // the vector rows (buffers.h)
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
