// OP_LAYERNORM: LayerNorm over each row's K channels (reference ops_forward.layernorm).
//
// On x widened by 8 fractional bits (fd = fx + 8): mean = rdiv(sum x 2^8, K); d = x 2^8 - mean
// (|d| < 2^24); var = rdiv(sum d^2, K) (< 2^48); (r, sh) = rsqrt(var + eps_i) by the table;
// n = rshift_round(d r, sh - 14) (NORM_FRAC 14, |n| <= ~sqrt(K) 2^14, wider than 16 bits);
// y = requant(n g + rshift_round(beta, SH0), SH1).
//
// Per row, on the vector unit: three passes over the row buffer (sum, squared deviations,
// normalise), CFG_VU_LANES elements per cycle each, with per-lane partial sums and an adder
// tree. The two divisions (mean, var) and the rsqrt are one per row, between the passes.
// Flag CACHE also writes what the backward keeps: n (int32, 14 fractional bits) and (r, sh).
//
// The backward (OP_LAYERNORM_BWD, from the forward's CACHE) follows the forward below.
#ifndef TRILEVEL_OPS_LAYERNORM_H
#define TRILEVEL_OPS_LAYERNORM_H

#include "../buffers.h"
#include "../desc.h"
#include "../memory.h"
#include "grad_format.h"

static const int LN_EXTRA_FRAC = 8;  // x is widened by 8 fractional bits (the mean's precision)
static const int LN_NORM_FRAC = 14;  // n's fractional bits

/// Sum of the VU_LANES partial sums: a balanced adder tree once the row is done.
inline wide_t ln_tree_sum(const wide_t part[CFG_VU_LANES]) {
#pragma HLS INLINE
    wide_t s = 0;
LN_TREE:
    for (int l = 0; l < CFG_VU_LANES; l++) {
#pragma HLS UNROLL
        s += part[l];
    }
    return s;
}

/// X (M, K) int16 at fx, row stride XS; W gamma (K) int16 at fg; B beta (K) int16 at fbeta
/// (both through the weight port); Y (M, K) int16 at fy, row stride YS.
/// SH0 = fbeta - (14 + fg), SH1 = 14 + fg - fy; E0/E1 eps_i = max(1, round(eps 2^(2 fd))),
/// which must be below 2^52 (so var + eps_i stays below 2^53, where the reference's
/// mantissa is exact). Flag CACHE: AUX0 int32 n (M, K) row stride AS, at 14 fractional bits;
/// AUX1 int32 (M, 2) (r, sh) per row, one beat per row (2 values padded to CFG_I32_PER_WORD).
/// M <= CFG_MAX_TOKENS, K <= CFG_MAX_DIM.
inline ap_uint<32> op_layernorm(word_t* mem, const word_t* wmem, ap_uint<32> mem_bytes, const Desc& d, const Luts& L,
                                EngineBuffers& buf) {
    const ap_uint<32> m_u = d.u(DW_M), k_u = d.u(DW_K);
    if (m_u == 0 || m_u > CFG_MAX_TOKENS || k_u == 0 || k_u > CFG_MAX_DIM) return ST_BAD_SIZE;
    const int m = int(m_u), k = int(k_u);
    const wide_t eps = d.e64();
    if (eps < 1 || eps >= (wide_t(1) << 52)) return ST_BAD_PARAM;
    const bool cache = d.has(FLAG_CACHE);
    if (!tensor_ok(d.u(DW_X), m, d.u(DW_XS), k, 2, mem_bytes) || !tensor_ok(d.u(DW_W), 1, k, k, 2, mem_bytes) ||
        !tensor_ok(d.u(DW_B), 1, k, k, 2, mem_bytes) || !tensor_ok(d.u(DW_Y), m, d.u(DW_YS), k, 2, mem_bytes))
        return ST_BAD_ADDRESS;
    if (cache && (!tensor_ok(d.u(DW_AUX0), m, d.u(DW_AS), k, 4, mem_bytes) ||
                  !tensor_ok(d.u(DW_AUX1), m, CFG_I32_PER_WORD, 2, 4, mem_bytes)))
        return ST_BAD_ADDRESS;
    const int sh0 = d.s(DW_SH0), sh1 = d.s(DW_SH1);
    const addr_t x_addr = d.u(DW_X), y_addr = d.u(DW_Y), n_addr = d.u(DW_AUX0), rs_addr = d.u(DW_AUX1);
    const addr_t xs = d.u(DW_XS), ys = d.u(DW_YS), as = d.u(DW_AS);

    // the vector rows (buffers.h), cyclic by VU_LANES
    vrow_t &gamma = buf.vrow[0], &beta = buf.vrow[1], &x = buf.vrow[2], &y = buf.vrow[3];
    vrow32_t& nrow = buf.vrow32[0];
    i32_t rs[CFG_I32_PER_WORD];
#pragma HLS ARRAY_PARTITION variable = rs complete
    load_i16<CFG_MAX_DIM>(wmem, d.u(DW_W), k, gamma);
    load_i16<CFG_MAX_DIM>(wmem, d.u(DW_B), k, beta);
    const int groups = (k + CFG_VU_LANES - 1) / CFG_VU_LANES;

LN_ROWS:
    for (int row = 0; row < m; row++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
        load_i16<CFG_MAX_DIM>(mem, x_addr + addr_t(row) * xs * 2, k, x);

        wide_t part[CFG_VU_LANES];
#pragma HLS ARRAY_PARTITION variable = part complete
    LN_SUM_CLEAR:
        for (int l = 0; l < CFG_VU_LANES; l++) part[l] = 0;
        // II=1: x is cyclic-partitioned by VU_LANES (one bank per lane); part[l] += ... is a
        // carried dependence through one 64-bit adder per lane (1 cycle), which allows II=1.
        // One iteration: VU_LANES elements added into their lanes' partial sums.
        SIM_LOOP(CNT_LN_SUM, groups);
    LN_SUM:
        for (int g = 0; g < groups; g++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_DIM / CFG_VU_LANES
        LN_SUM_LANES:
            for (int l = 0; l < CFG_VU_LANES; l++) {
                const int i = g * CFG_VU_LANES + l;
                if (i < k) part[l] += wide_t(x[i]) << LN_EXTRA_FRAC;
            }
        }
        const wide_t mean = rdiv(ln_tree_sum(part), k);  // one divider per row, outside the pipelines

    LN_VAR_CLEAR:
        for (int l = 0; l < CFG_VU_LANES; l++) part[l] = 0;
        // II=1: as LN_SUM (d^2 < 2^48 needs a 25x25-bit multiplier per lane, pipelined).
        // One iteration: VU_LANES squared deviations added into their lanes' partial sums.
        SIM_LOOP(CNT_LN_VAR, groups);
    LN_VAR:
        for (int g = 0; g < groups; g++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_DIM / CFG_VU_LANES
        LN_VAR_LANES:
            for (int l = 0; l < CFG_VU_LANES; l++) {
                const int i = g * CFG_VU_LANES + l;
                if (i < k) {
                    const wide_t dev = (wide_t(x[i]) << LN_EXTRA_FRAC) - mean;
                    part[l] += dev * dev;
                }
            }
        }
        const wide_t var = rdiv(ln_tree_sum(part), k);
        int sh;
        const wide_t r = rsqrt(L, var + eps, sh);  // 1/sqrt(var + eps) = r 2^-sh, r <= 2^24

        // II=1: x, gamma, beta, y, nrow are cyclic-partitioned by VU_LANES; elements are
        // independent. One iteration: VU_LANES normalised values and outputs.
        SIM_LOOP(CNT_LN_NORM, groups);
    LN_NORM:
        for (int g = 0; g < groups; g++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_DIM / CFG_VU_LANES
        LN_NORM_LANES:
            for (int l = 0; l < CFG_VU_LANES; l++) {
                const int i = g * CFG_VU_LANES + l;
                if (i < k) {
                    const wide_t dev = (wide_t(x[i]) << LN_EXTRA_FRAC) - mean;
                    const wide_t nv = rshift_round(dev * r, sh - LN_NORM_FRAC);  // |d r| < 2^48
                    y[i] = requant(nv * gamma[i] + rshift_round(wide_t(beta[i]), sh0), sh1);
                    nrow[i] = i32_t(nv);
                }
            }
        }
        store_i16<CFG_MAX_DIM>(mem, y_addr + addr_t(row) * ys * 2, k, y);
        if (cache) {
            store_i32<CFG_MAX_DIM>(mem, n_addr + addr_t(row) * as * 4, k, nrow);
            rs[0] = i32_t(r);
            rs[1] = i32_t(sh);
            store_i32<CFG_I32_PER_WORD>(mem, rs_addr + addr_t(row) * CFG_AXI_BYTES, 2, rs);
        }
    }
    return ST_DONE;
}

// ---------------------------------------------------------------- backward

// Backward of OP_LAYERNORM from the forward's cache (reference ops_backward.layernorm_backward).
//
// With n the normalised input at 14 fractional bits and 1/sqrt(var) = r 2^-sh (at fd = fx + 8):
//   dgamma = sum_rows dy n (at fdy + 14);  dbeta = sum_rows dy (at fdy);
//   dn = dy gamma (at fdy + fg);  m1 = rdiv(sum dn, K);  m2 = rdiv(sum dn n, K 2^14);
//   t = dn - m1 - rshift_round(n m2, 14);  v = rshift_round(t r, sh - 24)
//   dx = v at fdy + fg - fd + 24, dynamic.
// The vector unit works on VU_LANES elements per cycle; the two row sums and the
// per-column sums are exact 64-bit integer sums, so their order does not matter.

/// OP_LAYERNORM_BWD.
/// X:    dy (M, K) int16, row stride XS, format from slot F0.
/// W:    gamma (K) int16 at SH0 = fg; SH1 = fx, the format of the forward's input.
/// AUX0: n (M, K) int32, row stride AS, at 14 fractional bits (the forward's CACHE).
/// AUX1: (M, 2) int32, one beat per row: r and sh of each row (the forward's CACHE).
/// Y:    dx (M, K) int16, row stride YS, dynamic format -> slot F1.
/// AUX2: dgamma (K) int16 -> slot F2.   B: dbeta (K) int16 -> slot F3.   AUX3: format table.
/// A cache row with r outside (0, 2^25] or sh - 24 outside [0, ABI_MAX_SHIFT] is ST_BAD_PARAM.
inline ap_uint<32> op_layernorm_bwd(word_t* mem, const word_t* wmem, ap_uint<32> mem_bytes, const Desc& d,
                                    EngineBuffers& buf) {
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

    // The vector rows (buffers.h), cyclic by VU_LANES. dn = dy gamma (|dn| <= 2^30) and the
    // dbeta sums (|sum dy| <= M 2^15 < 2^23) fit 32 bits; the dgamma sums need the wide row.
    vrow_t &g = buf.vrow[0], &dy = buf.vrow[1], &out = buf.vrow[2], &outb = buf.vrow[3];
    vrow32_t &n = buf.vrow32[0], &dn = buf.vrow32[1], &db = buf.vrow32[2];
    wide_t(&dg)[CFG_MAX_DIM] = buf.vwide;
    load_i16<CFG_MAX_DIM>(wmem, d.u(DW_W), K, g);

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
                        const wide_t dnk = wide_t(dy[k]) * g[k];
                        dn[k] = i32_t(dnk);
                        s1 += dnk;
                        s2 += dnk * n[k];
                        if (pass == 0) {
                            const wide_t dgk = i == 0 ? wide_t(0) : dg[k];
                            const wide_t dbk = i == 0 ? wide_t(0) : wide_t(db[k]);
                            dg[k] = dgk + wide_t(dy[k]) * n[k];
                            db[k] = i32_t(dbk + dy[k]);
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
                        const wide_t t = wide_t(dn[k]) - m1 - rshift_round(wide_t(n[k]) * m2, ABI_NORM_FRAC);
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
