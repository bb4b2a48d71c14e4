// Backward of OP_ATTENTION's core from the stored probabilities (reference ops_backward.
// attention_backward). Per head, with dO the context gradient and p the stored probabilities:
//   dP = dO v^T (dynamic format fdP);  rowdot = sum_j dP p;  dS = p (dP - rshift_round(rowdot, 15))
//   (dynamic, fdS);  dq = dS k, dk = dS^T q (at fdS + fqkv + sh);  dv = p^T dO (at 15 + fdctx);
//   dq, dk and dv share one format, the coarsest any of them needs.
//
// The row engine walks one query row at a time with every head in parallel over the C
// channels, one key per cycle, and iterates only the row's key list (dense: all M keys;
// sparse patch rows: the prefix keys, then the listed keys), in the order of the forward's
// PROBS rows. dq is a row result; dk and dv are scattered into per-key accumulators
// (M x C each, on chip) that every query row adds to.
//
// Dynamic formats take four passes over the rows, each recomputing what it needs:
//   pass 0: dP's maximum over every (row, key) pair -> fdP;
//   pass 1: dP requantised, rowdot, dS's maximum -> fdS;
//   pass 2: dS requantised, dq / dk / dv accumulated, their maxima -> the joint format;
//   pass 3: the same again, written.
// Pass 0 runs over all M keys of every row even in sparse mode: the reference takes dP's
// format from the dense dP, pruned pairs included (their dS is 0, but their dP counts in the
// maximum). It is the only place where pruned connections cost cycles; taking the maximum
// over the kept pairs instead would make pass 0 sparse too (hls/README.md, "Backward ops").
#ifndef TRILEVEL_OPS_ATTENTION_BACKWARD_H
#define TRILEVEL_OPS_ATTENTION_BACKWARD_H

#include "../desc.h"
#include "../mac_array.h"
#include "../memory.h"
#include "attention.h"
#include "grad_format.h"

/// log4(d) for d a power of 4 (the attention scale 1/sqrt(d) = 2^-log4(d)), else -1.
inline int log4_exact(int d) {
    if (d < 1 || (d & (d - 1)) != 0) return -1;
    const int e = leading_one(d);
    return (e & 1) ? -1 : e / 2;
}

static_assert(3 * CFG_MAX_DIM <= MAC_LANES, "dS k, dS^T q and p^T dO map onto the multiplier array");

/// dP of one key for every head: dp[h] = sum over head h's channels of dout[c] v[c], through
/// the engine's one multiplier array (C lanes) and the forward's per-head adder tree. Exact:
/// D products below 2^30 each.
inline void atb_dp_heads(const q16_t dout[CFG_MAX_DIM], const q16_t v[CFG_MAX_DIM], int C, int log4d,
                         acc_t dp[CFG_MAX_HEADS]) {
#pragma HLS INLINE
    q16_t a[MAC_LANES], b[MAC_LANES];
    prod_t prod[MAC_LANES];
ATB_DP_OPERANDS:
    for (int l = 0; l < MAC_LANES; l++) {
        a[l] = l < C ? dout[l] : q16_t(0);
        b[l] = l < C ? v[l] : q16_t(0);
    }
    mac_products(a, b, prod);  // the engine's one multiplier array (mac_array.h)
    acc_t tree[ATTN_TREE_LEVELS + 1][CFG_MAX_DIM];
#pragma HLS ARRAY_PARTITION variable = tree complete dim = 0
ATB_DP_PRODUCT:
    for (int c = 0; c < CFG_MAX_DIM; c++) tree[0][c] = prod[c];
    attn_head_sums(tree, C, log4d, dp);
}

/// OP_ATTENTION_BWD.
/// X:    dctx (M, C) int16, row stride XS, format from slot F0.
/// W:    qkv, the forward's input (M, 3C) int16, row stride WS, at SH0 = fqkv (q, k, v in
///       column blocks of C, heads of D = C / P0 channels inside each, as the forward).
/// AUX2: probs (P0 heads x M rows, L) int16 at f = 15, row stride M padded to a beat: row
///       (h, i) over row i's key list (the forward's PROBS layout).
/// Flag SPARSE: AUX0 int32 lists (M - P1, P2 = n_conn) row stride AS, strictly ascending
///       patch indices < M - P1 (else ST_BAD_INDEX); patch rows attend over P1 + n_conn keys.
/// Y:    dqkv (M, 3C) int16, row stride YS, dynamic format -> slot F1.
/// N = C (a multiple of 8, so the dq, dk, dv blocks start on beats); P0 heads (D a power of 4);
/// P1 prefix rows (dense rows); AUX3 format table.
inline ap_uint<32> op_attention_bwd(word_t* mem, ap_uint<32> mem_bytes, const Desc& d) {
    const int M = int(d.u(DW_M));
    const int C = int(d.u(DW_N));
    const int H = int(d.u(DW_P0));
    const int pre = int(d.u(DW_P1));
    const bool sparse = d.has(FLAG_SPARSE);
    const int ncon = sparse ? int(d.u(DW_P2)) : 0;
    const int fqkv = d.s(DW_SH0);
    if (M < 1 || M > CFG_MAX_TOKENS || C < 1 || C > CFG_MAX_DIM || C % CFG_I16_PER_WORD != 0 || H < 1 ||
        H > CFG_MAX_HEADS || C % H != 0 || C / H > CFG_MAX_HEAD_DIM || log4_exact(C / H) < 0 || pre < 0 ||
        pre > CFG_MAX_PREFIX || pre > M)
        return ST_BAD_SIZE;
    if (sparse && (pre >= M || ncon < 1 || ncon > M - pre)) return ST_BAD_SIZE;
    if (!frac_ok(fqkv)) return ST_BAD_PARAM;
    const int D = C / H;
    const int sc = log4_exact(D);
    const int ps = (M + CFG_I16_PER_WORD - 1) / CFG_I16_PER_WORD * CFG_I16_PER_WORD;  // probs row stride
    if (!tensor_ok(d.u(DW_X), M, d.u(DW_XS), C, 2, mem_bytes) ||
        !tensor_ok(d.u(DW_W), M, d.u(DW_WS), 3 * C, 2, mem_bytes) ||
        !tensor_ok(d.u(DW_AUX2), H * M, ps, M, 2, mem_bytes) ||
        !tensor_ok(d.u(DW_Y), M, d.u(DW_YS), 3 * C, 2, mem_bytes) ||
        (sparse && !tensor_ok(d.u(DW_AUX0), M - pre, d.u(DW_AS), ncon, 4, mem_bytes)) || !fmt_table_ok(d, mem_bytes))
        return ST_BAD_ADDRESS;
    const int fdo = fmt_read(mem, d, 0);
    if (!frac_ok(fdo)) return ST_BAD_PARAM;

    i32_t lst[CFG_MAX_TOKENS];
    if (sparse) {
        bool bad = false;
    ATB_LIST_ROWS:
        for (int i = 0; i < M - pre; i++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
            load_i32<CFG_MAX_TOKENS>(mem, d.u(DW_AUX0) + ap_uint<32>(i) * d.u(DW_AS) * 4, ncon, lst);
            SIM_LOOP(CNT_ATB_LIST_CHECK, ncon);
        ATB_LIST_CHECK:  // one index per cycle against its predecessor: II=1 (the flag is an OR)
            for (int j = 0; j < ncon; j++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
                if (lst[j] < 0 || lst[j] >= M - pre || (j > 0 && lst[j] <= lst[j - 1])) bad = true;
            }
        }
        if (bad) return ST_BAD_INDEX;
    }

    // q, k, v of every token on chip, one C-wide word per row (reshaped), so a key's C
    // channels are read in one cycle; dk and dv accumulate per key row the same way. Channel
    // c = h D + e belongs to head h: with D a run-time power of 4, the per-head adder trees
    // select their D inputs through a small mux per channel (D in {1, 4, 16, 64}).
    // Resources as written: q/k/v 3 x 197 x 384 x 16 bits and dk/dv 2 x 197 x 384 x 48 bits
    // (1.4 MB); on the board these share the forward's K/V buffers, and dk/dv need only 40 bits.
    static q16_t qb[CFG_MAX_TOKENS][CFG_MAX_DIM], kb[CFG_MAX_TOKENS][CFG_MAX_DIM], vb[CFG_MAX_TOKENS][CFG_MAX_DIM];
#pragma HLS ARRAY_RESHAPE variable = qb complete dim = 2
#pragma HLS ARRAY_RESHAPE variable = kb complete dim = 2
#pragma HLS ARRAY_RESHAPE variable = vb complete dim = 2
    // |dk|, |dv| < M 2^30 < 2^38: the 48-bit accumulators are exact
    static acc_t dk[CFG_MAX_TOKENS][CFG_MAX_DIM], dv[CFG_MAX_TOKENS][CFG_MAX_DIM];
#pragma HLS ARRAY_RESHAPE variable = dk complete dim = 2
#pragma HLS ARRAY_RESHAPE variable = dv complete dim = 2
ATB_LOAD_QKV:
    for (int i = 0; i < M; i++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
        const ap_uint<32> row = d.u(DW_W) + ap_uint<32>(i) * d.u(DW_WS) * 2;
        load_i16<CFG_MAX_DIM>(mem, row, C, qb[i]);
        load_i16<CFG_MAX_DIM>(mem, row + C * 2, C, kb[i]);
        load_i16<CFG_MAX_DIM>(mem, row + 2 * C * 2, C, vb[i]);
    }

    // one query row's working set, heads side by side
    q16_t dout[CFG_MAX_DIM];
#pragma HLS ARRAY_PARTITION variable = dout complete dim = 1
    q16_t p[CFG_MAX_HEADS][CFG_MAX_TOKENS], dpq[CFG_MAX_HEADS][CFG_MAX_TOKENS];
#pragma HLS ARRAY_PARTITION variable = p complete dim = 1
#pragma HLS ARRAY_PARTITION variable = dpq complete dim = 1
    wide_t rowdot[CFG_MAX_HEADS];
#pragma HLS ARRAY_PARTITION variable = rowdot complete dim = 1
    acc_t dq[CFG_MAX_DIM];
#pragma HLS ARRAY_PARTITION variable = dq complete dim = 1
    q16_t out[CFG_MAX_DIM];
#pragma HLS ARRAY_PARTITION variable = out complete dim = 1

    const int facc_p = fdo + fqkv;
    int fdp = ABI_FRAC_MAX, fds = ABI_FRAC_MAX, f = ABI_FRAC_MAX;
    int sh_p = 0, sh_s = 0, sh_qk = 0, sh_v = 0;
    wide_t mx_p = 0, mx_s = 0, mx_qk = 0, mx_v = 0;
ATB_PASS:
    for (int pass = 0; pass < 4; pass++) {
        if (pass == 1) {
            fdp = dynamic_frac(mx_p, facc_p);
            sh_p = requant_shift(facc_p, fdp);
        } else if (pass == 2) {
            fds = dynamic_frac(mx_s, fdp + ABI_PROB_FRAC);
            sh_s = requant_shift(fdp + ABI_PROB_FRAC, fds);
        } else if (pass == 3) {
            const int facc_qk = fds + fqkv + sc, facc_v = ABI_PROB_FRAC + fdo;
            const int f_qk = dynamic_frac(mx_qk, facc_qk), f_v = dynamic_frac(mx_v, facc_v);
            f = f_qk < f_v ? f_qk : f_v;
            sh_qk = requant_shift(facc_qk, f);
            sh_v = requant_shift(facc_v, f);
        }
        if (pass >= 2) {
            SIM_LOOP(CNT_ATB_ZERO, M);
        ATB_ZERO:  // one key row of dk and dv per cycle (one wide word each): II=1
            for (int j = 0; j < M; j++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
                for (int c = 0; c < CFG_MAX_DIM; c++) {
                    dk[j][c] = 0;
                    dv[j][c] = 0;
                }
            }
        }
    ATB_ROWS:
        for (int i = 0; i < M; i++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
            load_i16<CFG_MAX_DIM>(mem, d.u(DW_X) + ap_uint<32>(i) * d.u(DW_XS) * 2, C, dout);
            if (pass == 0) {
                SIM_LOOP(CNT_ATB_DP_MAX, M);
            ATB_DP_MAX:  // one key per cycle (all M keys, see above): C products on the
                         // multiplier array, H adder trees of D, a comparator tree over the
                         // heads and one carried compare-select: II=1
                for (int j = 0; j < M; j++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
                    acc_t dp[CFG_MAX_HEADS];
                    atb_dp_heads(dout, vb[j], C, sc, dp);
                    for (int h = 0; h < CFG_MAX_HEADS; h++)
                        if (h < H) mx_p = max_abs(mx_p, dp[h]);
                }
                continue;
            }
            const bool dense_row = !sparse || i < pre;
            const int L = dense_row ? M : pre + ncon;
            if (!dense_row)
                load_i32<CFG_MAX_TOKENS>(mem, d.u(DW_AUX0) + ap_uint<32>(i - pre) * d.u(DW_AS) * 4, ncon, lst);
        ATB_LOAD_P:
            for (int h = 0; h < H; h++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_HEADS
                load_i16<CFG_MAX_TOKENS>(mem, d.u(DW_AUX2) + (ap_uint<32>(h) * M + i) * ps * 2, L, p[h]);
            }
            for (int h = 0; h < CFG_MAX_HEADS; h++) rowdot[h] = 0;
            SIM_LOOP(pass < 3 ? CNT_ATB_DP_MAXP : CNT_ATB_DP, L);
        ATB_DP:  // one listed key per cycle: dP for every head (C products on the multiplier
                 // array, H adder trees), requantised, and H carried 64-bit rowdot sums (one
                 // 16x16 multiplier and one adder per head): II=1
            for (int jj = 0; jj < L; jj++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
                const int j = dense_row || jj < pre ? jj : pre + int(lst[jj - pre]);
                acc_t dp[CFG_MAX_HEADS];
                atb_dp_heads(dout, vb[j], C, sc, dp);
                for (int h = 0; h < CFG_MAX_HEADS; h++) {
                    if (h < H) {
                        dpq[h][jj] = sat16(rshift_round(dp[h], sh_p));
                        rowdot[h] += wide_t(dpq[h][jj]) * p[h][jj];
                    }
                }
            }
            for (int c = 0; c < CFG_MAX_DIM; c++) dq[c] = 0;
            SIM_LOOP(pass < 3 ? CNT_ATB_DS_MAXP : CNT_ATB_DS, L);
        ATB_DS:  // one listed key per cycle: dS for every head; pass 1 takes its maximum
                 // (comparator tree, one carried compare-select); passes 2-3 requantise it and
                 // add C products each to dq (registers), dk[j] and dv[j] (read-modify-write
                 // of one wide word; the keys of a list are distinct, so no two iterations in
                 // flight touch the same row: II=1 with the dependence declared false)
            for (int jj = 0; jj < L; jj++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
#pragma HLS DEPENDENCE variable = dk inter false
#pragma HLS DEPENDENCE variable = dv inter false
                const int j = dense_row || jj < pre ? jj : pre + int(lst[jj - pre]);
                q16_t dsq[CFG_MAX_HEADS];
                for (int h = 0; h < CFG_MAX_HEADS; h++) {
                    const wide_t ds = wide_t(p[h][jj]) * (wide_t(dpq[h][jj]) - rshift_round(rowdot[h], ABI_PROB_FRAC));
                    if (pass == 1 && h < H) mx_s = max_abs(mx_s, ds);
                    dsq[h] = sat16(rshift_round(ds, sh_s));
                }
                if (pass >= 2) {
                    // 3 C products on the multiplier array: lanes [0, C) dS k, [C_MAX, C_MAX + C)
                    // dS^T q, [2 C_MAX, 2 C_MAX + C) p^T dO; channel c takes its head's dS and p
                    q16_t a[MAC_LANES], b[MAC_LANES];
                    prod_t prod[MAC_LANES];
                    for (int l = 0; l < MAC_LANES; l++) {
                        a[l] = 0;
                        b[l] = 0;
                    }
                    for (int c = 0; c < CFG_MAX_DIM; c++)
                        if (c < C) {
                            const int h = c >> (2 * sc);
                            a[c] = dsq[h];
                            b[c] = kb[j][c];
                            a[CFG_MAX_DIM + c] = dsq[h];
                            b[CFG_MAX_DIM + c] = qb[i][c];
                            a[2 * CFG_MAX_DIM + c] = p[h][jj];
                            b[2 * CFG_MAX_DIM + c] = dout[c];
                        }
                    mac_products(a, b, prod);  // the engine's one multiplier array (mac_array.h)
                    for (int c = 0; c < CFG_MAX_DIM; c++)
                        if (c < C) {
                            dq[c] += prod[c];
                            dk[j][c] += prod[CFG_MAX_DIM + c];
                            dv[j][c] += prod[2 * CFG_MAX_DIM + c];
                        }
                }
            }
            if (pass == 2) {
                for (int c = 0; c < CFG_MAX_DIM; c++)
                    if (c < C) mx_qk = max_abs(mx_qk, dq[c]);
            } else if (pass == 3) {
                for (int c = 0; c < CFG_MAX_DIM; c++) out[c] = sat16(rshift_round(dq[c], sh_qk));
                store_i16<CFG_MAX_DIM>(mem, d.u(DW_Y) + ap_uint<32>(i) * d.u(DW_YS) * 2, C, out);
            }
        }
        if (pass == 2) {
            SIM_LOOP(CNT_ATB_KV_MAX, M);
        ATB_KV_MAX:  // one key row of dk and dv per cycle: two comparator trees over C lanes
                     // and carried compare-selects: II=1
            for (int j = 0; j < M; j++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
                for (int c = 0; c < CFG_MAX_DIM; c++)
                    if (c < C) {
                        mx_qk = max_abs(mx_qk, dk[j][c]);
                        mx_v = max_abs(mx_v, dv[j][c]);
                    }
            }
        } else if (pass == 3) {
            SIM_LOOP(CNT_ATB_KV_OUT, M);
        ATB_KV_OUT:  // one key row per iteration: dk and dv requantised (C lanes each) and
                     // written as two bursts of C/8 beats (MEM_WRITE)
            for (int j = 0; j < M; j++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
                const ap_uint<32> row = d.u(DW_Y) + ap_uint<32>(j) * d.u(DW_YS) * 2;
                for (int c = 0; c < CFG_MAX_DIM; c++) out[c] = sat16(rshift_round(dk[j][c], sh_qk));
                store_i16<CFG_MAX_DIM>(mem, row + C * 2, C, out);
                for (int c = 0; c < CFG_MAX_DIM; c++) out[c] = sat16(rshift_round(dv[j][c], sh_v));
                store_i16<CFG_MAX_DIM>(mem, row + 2 * C * 2, C, out);
            }
        }
    }
    fmt_write(mem, d, 1, f);
    return ST_DONE;
}

#endif
