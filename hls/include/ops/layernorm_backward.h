// Backward of OP_LAYERNORM from the forward's cache (reference ops_backward.layernorm_backward).
//
// With n the normalised input at 14 fractional bits and 1/sqrt(var) = r 2^-sh (at fd = fx + 8):
//   dgamma = sum_rows dy n (at fdy + 14);  dbeta = sum_rows dy (at fdy);
//   dn = dy gamma (at fdy + fg);  m1 = rdiv(sum dn, K);  m2 = rdiv(sum dn n, K 2^14);
//   t = dn - m1 - rshift_round(n m2, 14);  v = rshift_round(t r, sh - 24)
//   dx = v at fdy + fg - fd + 24, dynamic.
// The vector unit works on VU_LANES elements per cycle; the two row sums and the
// per-column sums are exact 64-bit integer sums, so their order does not matter.
#ifndef TRILEVEL_OPS_LAYERNORM_BACKWARD_H
#define TRILEVEL_OPS_LAYERNORM_BACKWARD_H

#include "../desc.h"
#include "../memory.h"
#include "grad_format.h"

/// OP_LAYERNORM_BWD.
/// X:    dy (M, K) int16, row stride XS, format from slot F0.
/// W:    gamma (K) int16 at SH0 = fg; SH1 = fx, the format of the forward's input.
/// AUX0: n (M, K) int32, row stride AS, at 14 fractional bits (the forward's CACHE).
/// AUX1: (M, 2) int32, one beat per row: r and sh of each row (the forward's CACHE).
/// Y:    dx (M, K) int16, row stride YS, dynamic format -> slot F1.
/// AUX2: dgamma (K) int16 -> slot F2.   B: dbeta (K) int16 -> slot F3.   AUX3: format table.
/// A cache row with r outside (0, 2^25] or sh - 24 outside [0, ABI_MAX_SHIFT] is ST_BAD_PARAM.
inline ap_uint<32> op_layernorm_bwd(word_t* mem, const word_t* wmem, ap_uint<32> mem_bytes, const Desc& d) {
    const int M = int(d.u(DW_M));
    const int K = int(d.u(DW_K));
    const int fg = d.s(DW_SH0);
    const int fx = d.s(DW_SH1);
    if (M < 1 || M > CFG_MAX_TOKENS || K < 1 || K > CFG_MAX_DIM) return ST_BAD_SIZE;
    if (!frac_ok(fg) || !frac_ok(fx)) return ST_BAD_PARAM;
    if (!tensor_ok(d.u(DW_X), M, d.u(DW_XS), K, 2, mem_bytes) || !tensor_ok(d.u(DW_W), 1, K, K, 2, mem_bytes) ||
        !tensor_ok(d.u(DW_AUX0), M, d.u(DW_AS), K, 4, mem_bytes) ||
        !tensor_ok(d.u(DW_AUX1), M, CFG_I32_PER_WORD, 2, 4, mem_bytes) ||
        !tensor_ok(d.u(DW_Y), M, d.u(DW_YS), K, 2, mem_bytes) || !tensor_ok(d.u(DW_AUX2), 1, K, K, 2, mem_bytes) ||
        !tensor_ok(d.u(DW_B), 1, K, K, 2, mem_bytes) || !fmt_table_ok(d, mem_bytes))
        return ST_BAD_ADDRESS;
    const int fdy = fmt_read(mem, d, 0);
    if (!frac_ok(fdy)) return ST_BAD_PARAM;
    const int of = LUT_RSQRT_OUT_FRAC;

    // the cache's (r, sh) pairs, checked before anything is computed
    static i32_t rs[CFG_MAX_TOKENS][CFG_I32_PER_WORD];
    bool bad = false;
LNB_LOAD_RS:
    for (int i = 0; i < M; i++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
        load_i32<CFG_I32_PER_WORD>(mem, d.u(DW_AUX1) + ap_uint<32>(i) * CFG_AXI_BYTES, 2, rs[i]);
        const int r = int(rs[i][0]), sh = int(rs[i][1]);
        if (r <= 0 || r > (1 << 25) || sh - of < 0 || sh - of > ABI_MAX_SHIFT) bad = true;
    }
    if (bad) return ST_BAD_PARAM;

    static q16_t g[CFG_MAX_DIM];
#pragma HLS ARRAY_PARTITION variable = g cyclic factor = CFG_VU_LANES dim = 1
    load_i16<CFG_MAX_DIM>(wmem, d.u(DW_W), K, g);
    static wide_t dg[CFG_MAX_DIM], db[CFG_MAX_DIM];
#pragma HLS ARRAY_PARTITION variable = dg cyclic factor = CFG_VU_LANES dim = 1
#pragma HLS ARRAY_PARTITION variable = db cyclic factor = CFG_VU_LANES dim = 1
    q16_t dy[CFG_MAX_DIM];
#pragma HLS ARRAY_PARTITION variable = dy cyclic factor = CFG_VU_LANES dim = 1
    i32_t n[CFG_MAX_DIM];
#pragma HLS ARRAY_PARTITION variable = n cyclic factor = CFG_VU_LANES dim = 1
    wide_t dn[CFG_MAX_DIM];
#pragma HLS ARRAY_PARTITION variable = dn cyclic factor = CFG_VU_LANES dim = 1
    q16_t out[CFG_MAX_DIM];
#pragma HLS ARRAY_PARTITION variable = out cyclic factor = CFG_VU_LANES dim = 1

    const int facc = fdy + fg - (fx + ABI_LN_EXTRA_FRAC) + of;
    const int groups = (K + CFG_VU_LANES - 1) / CFG_VU_LANES;
    wide_t mx = 0;
    int f = ABI_FRAC_MAX, shift = 0;
LNB_PASS:
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            f = dynamic_frac(mx, facc);
            shift = requant_shift(facc, f);
        }
    LNB_ROWS:
        for (int i = 0; i < M; i++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
            load_i16<CFG_MAX_DIM>(mem, d.u(DW_X) + ap_uint<32>(i) * d.u(DW_XS) * 2, K, dy);
            load_i32<CFG_MAX_DIM>(mem, d.u(DW_AUX0) + ap_uint<32>(i) * d.u(DW_AS) * 4, K, n);
            wide_t s1 = 0, s2 = 0;
            SIM_LOOP(pass == 0 ? CNT_LNB_SUM_MAXP : CNT_LNB_SUM, groups);
        LNB_SUM:  // VU_LANES columns per cycle: dn, the two row sums (adder trees, one carried
                  // add each) and, in pass 0, the column sums of dgamma / dbeta (each column
                  // touched once per row): II=1
            for (int k0 = 0; k0 < K; k0 += CFG_VU_LANES) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_DIM / CFG_VU_LANES
                for (int l = 0; l < CFG_VU_LANES; l++) {
                    const int k = k0 + l;
                    if (k < K) {
                        dn[k] = wide_t(dy[k]) * g[k];
                        s1 += dn[k];
                        s2 += dn[k] * n[k];
                        if (pass == 0) {
                            const wide_t dgk = i == 0 ? wide_t(0) : dg[k];
                            const wide_t dbk = i == 0 ? wide_t(0) : db[k];
                            dg[k] = dgk + wide_t(dy[k]) * n[k];
                            db[k] = dbk + dy[k];
                        }
                    }
                }
            }
            // one divider per row, outside the pipelines
            const wide_t m1 = rdiv(s1, K);
            const wide_t m2 = rdiv(s2, wide_t(K) << ABI_NORM_FRAC);
            const wide_t r = rs[i][0];
            const int sv = int(rs[i][1]) - of;
            SIM_LOOP(pass == 0 ? CNT_LNB_DX_MAXP : CNT_LNB_DX, groups);
        LNB_DX:  // VU_LANES columns per cycle, independent lanes; the pass-0 maximum is a
                 // comparator tree and one carried compare-select: II=1
            for (int k0 = 0; k0 < K; k0 += CFG_VU_LANES) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_DIM / CFG_VU_LANES
                for (int l = 0; l < CFG_VU_LANES; l++) {
                    const int k = k0 + l;
                    if (k < K) {
                        const wide_t t = dn[k] - m1 - rshift_round(wide_t(n[k]) * m2, ABI_NORM_FRAC);
                        const wide_t v = rshift_round(t * r, sv);
                        if (pass == 0)
                            mx = max_abs(mx, v);
                        else
                            out[k] = sat16(rshift_round(v, shift));
                    }
                }
            }
            if (pass == 1) store_i16<CFG_MAX_DIM>(mem, d.u(DW_Y) + ap_uint<32>(i) * d.u(DW_YS) * 2, K, out);
        }
    }
    fmt_write(mem, d, 1, f);

    // dgamma and dbeta were summed on chip in pass 0: written once their maxima are known
    wide_t mg = 0, mb = 0;
    SIM_LOOP(CNT_LNB_PARAM_MAX, groups);
LNB_PARAM_MAX:  // VU_LANES columns per cycle, two comparator trees: II=1
    for (int k0 = 0; k0 < K; k0 += CFG_VU_LANES) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_DIM / CFG_VU_LANES
        for (int l = 0; l < CFG_VU_LANES; l++) {
            const int k = k0 + l;
            if (k < K) {
                mg = max_abs(mg, dg[k]);
                mb = max_abs(mb, db[k]);
            }
        }
    }
    const int fdg = dynamic_frac(mg, fdy + ABI_NORM_FRAC), fdb = dynamic_frac(mb, fdy);
    const int sg = requant_shift(fdy + ABI_NORM_FRAC, fdg), sb = requant_shift(fdy, fdb);
    q16_t outb[CFG_MAX_DIM];
#pragma HLS ARRAY_PARTITION variable = outb cyclic factor = CFG_VU_LANES dim = 1
    SIM_LOOP(CNT_LNB_PARAM_OUT, groups);
LNB_PARAM_OUT:  // VU_LANES columns per cycle, independent: II=1
    for (int k0 = 0; k0 < K; k0 += CFG_VU_LANES) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_DIM / CFG_VU_LANES
        for (int l = 0; l < CFG_VU_LANES; l++) {
            const int k = k0 + l;
            if (k < K) {
                out[k] = sat16(rshift_round(dg[k], sg));
                outb[k] = sat16(rshift_round(db[k], sb));
            }
        }
    }
    store_i16<CFG_MAX_DIM>(mem, d.u(DW_AUX2), K, out);
    store_i16<CFG_MAX_DIM>(mem, d.u(DW_B), K, outb);
    fmt_write(mem, d, 2, fdg);
    fmt_write(mem, d, 3, fdb);
    return ST_DONE;
}

#endif
