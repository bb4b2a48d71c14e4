// Backward of OP_ATTENTION's core from the stored probabilities (reference ops_backward.
// attention_backward). It has a file of its own beside the forward's attention.h, whose row
// engine and adder trees it reuses: the two together would pass 850 lines. Per head, with dO the context gradient and p the stored probabilities:
//   dP = dO v^T (dynamic format fdP);  rowdot = sum_j dP p;  dS = p (dP - rshift_round(rowdot, 15))
//   (dynamic, fdS);  dq = dS k, dk = dS^T q (at fdS + fqkv + sh);  dv = p^T dO (at 15 + fdctx);
//   dq, dk and dv share one format, the coarsest any of them needs.
//
// The row engine walks one query row at a time with every head in parallel over the C
// channels, one key per cycle, and iterates only the row's key list (dense: all M keys;
// sparse patch rows: the prefix keys, then the listed keys), in the order of the forward's
// PROBS rows. dq is a row result; dk and dv are scattered into per-key 48-bit accumulators
// that every query row adds to: dv in the dP loop (it needs only p and dO), dk in the dS loop.
//
// Dynamic formats take four passes over the rows, each recomputing what it needs:
//   pass 0: dP's maximum over the computed (row, key) pairs -> fdP;
//   pass 1: dP requantised, rowdot, dS's maximum -> fdS;
//   pass 2: dS requantised, dq / dk / dv accumulated, their maxima -> the joint format;
//   pass 3: the same again, written.
// Every pass iterates only each row's key list: the reference takes dP's format from the
// entries the engine computes (the prefix keys and the listed keys of each row), so pruned
// connections cost no cycles anywhere (docs/fixed_point.md, "Backward ops").
//
// Buffers: the token store (buffers.h), the forward's K/V memories, four banks of rows of
// CFG_MAX_DIM int16; a 48-bit dk or dv row is three rows (ACC_CH channels each, buffers.h):
//   bank 0: v (row j), dk word 0 (row TOK_V + j)      bank 2: dk word 1 (j), dv word 1 (TOK_V + j)
//   bank 1: k (row j), dv word 0 (row TOK_V + j)      bank 3: dk word 2 (j), dv word 2 (TOK_V + j)
//   q of token i: bank i % 4, row TOK_Q + i / 4 (read once per query row)
// so the dP loop reads v and the three dv words from four different banks (one row each) and
// writes the dv words back through the write ports, the dS loop the same with k and dk: II=1
// with one read and one write port per bank. Exact at 48 bits: |dk|, |dv| <= M 2^30 < 2^38.
#ifndef TRILEVEL_OPS_ATTENTION_BACKWARD_H
#define TRILEVEL_OPS_ATTENTION_BACKWARD_H

#include "../buffers.h"
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

static_assert(2 * CFG_MAX_DIM <= MAC_LANES, "dO v^T with p^T dO, and dS k with dS^T q, map onto the multiplier array");

/// The token-store bank and row of word w (0..ACC_WORDS-1) of key j's dk (dv = false) or dv row.
inline int atb_acc_bank(bool dv, int w) { return dv ? w + 1 : (w == 0 ? 0 : w + 1); }
inline int atb_acc_row(bool dv, int w, int j) { return dv || w == 0 ? TOK_V + j : j; }

/// c[base + ch] = channel ch of key j's dk (dv = false) or dv accumulators, for ch < C (a
/// multiple of 8: whole groups of ACC_GROUP channels, ACC_WORDS beats each, in the three rows
/// of atb_acc_bank / atb_acc_row).
inline void atb_acc_load(const word_t tok[TOK_BANKS][TOK_DEPTH][TOK_BEATS], bool dv, int j, int C,
                         acc_t c[MAC_LANES], int base) {
#pragma HLS INLINE
ATB_ACC_LOAD:
    for (int w = 0; w < ACC_WORDS; w++)
        for (int g = 0; g < ACC_CH / ACC_GROUP; g++) {
            const int c0 = w * ACC_CH + g * ACC_GROUP;
            if (c0 < C) acc_group_unpack(tok[atb_acc_bank(dv, w)][atb_acc_row(dv, w, j)], g, c + base + c0);
        }
}

/// The inverse of atb_acc_load: channel ch < C of key j's accumulators = p[base + ch].
inline void atb_acc_store(word_t tok[TOK_BANKS][TOK_DEPTH][TOK_BEATS], bool dv, int j, int C,
                          const acc_t p[MAC_LANES], int base) {
#pragma HLS INLINE
ATB_ACC_STORE:
    for (int w = 0; w < ACC_WORDS; w++)
        for (int g = 0; g < ACC_CH / ACC_GROUP; g++) {
            const int c0 = w * ACC_CH + g * ACC_GROUP;
            if (c0 < C) acc_group_pack(p + base + c0, tok[atb_acc_bank(dv, w)][atb_acc_row(dv, w, j)], g);
        }
}

/// Channel c < C of key j's dk (dv = false) or dv accumulators, for every c < C (0 beyond).
inline void atb_acc_read(const word_t tok[TOK_BANKS][TOK_DEPTH][TOK_BEATS], bool dv, int j, int C,
                         acc_t v[CFG_MAX_DIM]) {
#pragma HLS INLINE
    for (int w = 0; w < ACC_WORDS; w++)
        for (int g = 0; g < ACC_CH / ACC_GROUP; g++) {
            const int c0 = w * ACC_CH + g * ACC_GROUP;
            if (c0 < C)
                acc_group_unpack(tok[atb_acc_bank(dv, w)][atb_acc_row(dv, w, j)], g, v + c0);
            else
                for (int k = 0; k < ACC_GROUP; k++) v[c0 + k] = 0;
        }
}

/// dP of one key for every head: dp[h] = sum over head h's channels of dout[c] v[c], from
/// lanes [0, C) of a multiplier-array pass and the forward's per-head adder tree. Exact: D
/// products below 2^30 each.
inline void atb_dp_heads(const acc_t prod[MAC_LANES], int C, int log4d, acc_t dp[CFG_MAX_HEADS]) {
#pragma HLS INLINE
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
inline ap_uint<32> op_attention_bwd(word_t* mem, ap_uint<32> mem_bytes, const Desc& d, EngineBuffers& buf) {
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

    // q, k, v of every token into the token store (layout above), straight from the qkv rows'
    // beats (the blocks start on beats: C is a multiple of 8)
    word_t(&tok)[TOK_BANKS][TOK_DEPTH][TOK_BEATS] = buf.tok;
    const int c_words = C / CFG_I16_PER_WORD;
ATB_LOAD_QKV:
    for (int i = 0; i < M; i++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
        const ap_uint<32> row = (d.u(DW_W) + ap_uint<32>(i) * d.u(DW_WS) * 2) / CFG_AXI_BYTES;
    ATB_LOAD_BLOCK:
        for (int blk = 0; blk < 3; blk++) {
            SIM_LOOP(CNT_MEM_READ, c_words);
        ATB_LOAD_BEATS:  // one gmem_a beat into one slot memory per cycle: II=1
            for (int b = 0; b < c_words; b++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = TOK_BEATS
                const word_t w = mem[row + blk * c_words + b];
                if (blk == 0)
                    tok[i % TOK_BANKS][TOK_Q + i / TOK_BANKS][b] = w;
                else if (blk == 1)
                    tok[1][i][b] = w;
                else
                    tok[0][i][b] = w;
            }
        }
    }

    // one query row's working set, heads side by side
    q16_t dout[CFG_MAX_DIM], qrow[CFG_MAX_DIM];
#pragma HLS ARRAY_PARTITION variable = dout complete dim = 1
#pragma HLS ARRAY_PARTITION variable = qrow complete dim = 1
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
        ATB_ZERO:  // one key's dk and dv rows per iteration (six token-store rows, two of them
                   // in banks 2 and 3 each): II=2, one write port per bank
            for (int j = 0; j < M; j++) {
#pragma HLS PIPELINE II = 2
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
                for (int w = 0; w < ACC_WORDS; w++)
                    for (int s = 0; s < TOK_BEATS; s++) {
                        tok[atb_acc_bank(false, w)][atb_acc_row(false, w, j)][s] = 0;
                        tok[atb_acc_bank(true, w)][atb_acc_row(true, w, j)][s] = 0;
                    }
            }
        }
    ATB_ROWS:
        for (int i = 0; i < M; i++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
            load_i16<CFG_MAX_DIM>(mem, d.u(DW_X) + ap_uint<32>(i) * d.u(DW_XS) * 2, C, dout);
            const bool dense_row = !sparse || i < pre;
            const int L = dense_row ? M : pre + ncon;
            if (!dense_row)
                load_i32<CFG_MAX_TOKENS>(mem, d.u(DW_AUX0) + ap_uint<32>(i - pre) * d.u(DW_AS) * 4, ncon, lst);
            if (pass == 0) {
                SIM_LOOP(CNT_ATB_DP_MAX, L);
            ATB_DP_MAX:  // one listed key per cycle: C products on the multiplier array (v from
                         // bank 0), H adder trees of D, a comparator tree over the heads and one
                         // carried compare-select: II=1
                for (int jj = 0; jj < L; jj++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
                    const int j = dense_row || jj < pre ? jj : pre + int(lst[jj - pre]);
                    q16_t a[MAC_LANES], b[MAC_LANES], v[CFG_MAX_DIM];
                    acc_t zero[MAC_LANES], prod[MAC_LANES];
                    tok_unpack(tok[0][j], C, v);
                    for (int l = 0; l < MAC_LANES; l++) {
                        a[l] = l < C ? dout[l] : q16_t(0);
                        b[l] = l < C ? v[l] : q16_t(0);
                        zero[l] = 0;
                    }
                    mac_products(a, b, zero, prod);  // the engine's one multiplier array (mac_array.h)
                    acc_t dp[CFG_MAX_HEADS];
                    atb_dp_heads(prod, C, sc, dp);
                    for (int h = 0; h < CFG_MAX_HEADS; h++)
                        if (h < H) mx_p = max_abs(mx_p, dp[h]);
                }
                continue;
            }
        ATB_LOAD_P:
            for (int h = 0; h < H; h++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_HEADS
                load_i16<CFG_MAX_TOKENS>(mem, d.u(DW_AUX2) + (ap_uint<32>(h) * M + i) * ps * 2, L, p[h]);
            }
            tok_unpack(tok[i % TOK_BANKS][TOK_Q + i / TOK_BANKS], C, qrow);
            for (int h = 0; h < CFG_MAX_HEADS; h++) rowdot[h] = 0;
            SIM_LOOP(pass < 3 ? CNT_ATB_DP_MAXP : CNT_ATB_DP, L);
        ATB_DP:  // one listed key per cycle: dP for every head (lanes [0, C) of the multiplier
                 // array, H adder trees), requantised, H carried 64-bit rowdot sums (one 16x16
                 // multiplier and one adder per head); passes 2-3 also add p^T dO into key j's
                 // dv (lanes [C_MAX, C_MAX + C), whose DSP post-adders take dv[j]): v from bank
                 // 0 and the dv words from banks 1-3, one row read and one row write per bank,
                 // and the keys of a list are distinct, so no two iterations in flight touch
                 // the same rows: II=1 with the dependence declared false
            for (int jj = 0; jj < L; jj++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
#pragma HLS DEPENDENCE variable = tok inter false
                const int j = dense_row || jj < pre ? jj : pre + int(lst[jj - pre]);
                q16_t a[MAC_LANES], b[MAC_LANES], v[CFG_MAX_DIM];
                acc_t cin[MAC_LANES], prod[MAC_LANES];
                for (int l = 0; l < MAC_LANES; l++) {
                    a[l] = 0;
                    b[l] = 0;
                    cin[l] = 0;
                }
                tok_unpack(tok[0][j], C, v);
                for (int c = 0; c < CFG_MAX_DIM; c++)
                    if (c < C) {
                        a[c] = dout[c];
                        b[c] = v[c];
                        a[CFG_MAX_DIM + c] = p[c >> (2 * sc)][jj];
                        b[CFG_MAX_DIM + c] = dout[c];
                    }
                if (pass >= 2) atb_acc_load(tok, true, j, C, cin, CFG_MAX_DIM);  // dv[j] into the lanes' adders
                mac_products(a, b, cin, prod);  // the engine's one multiplier array (mac_array.h)
                acc_t dp[CFG_MAX_HEADS];
                atb_dp_heads(prod, C, sc, dp);
                for (int h = 0; h < CFG_MAX_HEADS; h++) {
                    if (h < H) {
                        dpq[h][jj] = sat16(rshift_round(dp[h], sh_p));
                        rowdot[h] += wide_t(dpq[h][jj]) * p[h][jj];
                    }
                }
                if (pass >= 2) atb_acc_store(tok, true, j, C, prod, CFG_MAX_DIM);
            }
            for (int c = 0; c < CFG_MAX_DIM; c++) dq[c] = 0;
            SIM_LOOP(pass < 3 ? CNT_ATB_DS_MAXP : CNT_ATB_DS, L);
        ATB_DS:  // one listed key per cycle: dS for every head; pass 1 takes its maximum
                 // (comparator tree, one carried compare-select); passes 2-3 requantise it and
                 // add dS k to dq (lanes [0, C) of the multiplier array, dq registers into their
                 // post-adders: a one-pass recurrence) and dS^T q to key j's dk (lanes [C_MAX,
                 // C_MAX + C)): k from bank 1, the dk words from banks 0, 2, 3 (read-modify-write
                 // as in ATB_DP): II=1 with the dependence declared false
            for (int jj = 0; jj < L; jj++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
#pragma HLS DEPENDENCE variable = tok inter false
                const int j = dense_row || jj < pre ? jj : pre + int(lst[jj - pre]);
                q16_t dsq[CFG_MAX_HEADS];
                for (int h = 0; h < CFG_MAX_HEADS; h++) {
                    const wide_t ds = wide_t(p[h][jj]) * (wide_t(dpq[h][jj]) - rshift_round(rowdot[h], ABI_PROB_FRAC));
                    if (pass == 1 && h < H) mx_s = max_abs(mx_s, ds);
                    dsq[h] = sat16(rshift_round(ds, sh_s));
                }
                if (pass >= 2) {
                    q16_t a[MAC_LANES], b[MAC_LANES], k[CFG_MAX_DIM];
                    acc_t cin[MAC_LANES], prod[MAC_LANES];
                    for (int l = 0; l < MAC_LANES; l++) {
                        a[l] = 0;
                        b[l] = 0;
                        cin[l] = 0;
                    }
                    tok_unpack(tok[1][j], C, k);
                    for (int c = 0; c < CFG_MAX_DIM; c++)
                        if (c < C) {
                            const q16_t ds_c = dsq[c >> (2 * sc)];
                            a[c] = ds_c;
                            b[c] = k[c];
                            cin[c] = dq[c];
                            a[CFG_MAX_DIM + c] = ds_c;
                            b[CFG_MAX_DIM + c] = qrow[c];
                        }
                    atb_acc_load(tok, false, j, C, cin, CFG_MAX_DIM);  // dk[j] into the lanes' adders
                    mac_products(a, b, cin, prod);                   // the engine's one multiplier array
                    for (int c = 0; c < CFG_MAX_DIM; c++)
                        if (c < C) dq[c] = prod[c];
                    atb_acc_store(tok, false, j, C, prod, CFG_MAX_DIM);
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
        ATB_KV_MAX:  // one key's dk and dv rows per iteration (six token-store rows, two in
                     // banks 2 and 3 each: II=2, one read port per bank): two comparator trees
                     // over C lanes and carried compare-selects
            for (int j = 0; j < M; j++) {
#pragma HLS PIPELINE II = 2
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
                acc_t dk[CFG_MAX_DIM], dv[CFG_MAX_DIM];
                atb_acc_read(tok, false, j, C, dk);
                atb_acc_read(tok, true, j, C, dv);
                for (int c = 0; c < CFG_MAX_DIM; c++)
                    if (c < C) {
                        mx_qk = max_abs(mx_qk, dk[c]);
                        mx_v = max_abs(mx_v, dv[c]);
                    }
            }
        } else if (pass == 3) {
            SIM_LOOP(CNT_ATB_KV_OUT, M);
        ATB_KV_OUT:  // one key row per iteration: dk and dv requantised (C lanes each) and
                     // written as two bursts of C/8 beats (MEM_WRITE)
            for (int j = 0; j < M; j++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
                const ap_uint<32> row = d.u(DW_Y) + ap_uint<32>(j) * d.u(DW_YS) * 2;
                acc_t acc[CFG_MAX_DIM];
                atb_acc_read(tok, false, j, C, acc);
                for (int c = 0; c < CFG_MAX_DIM; c++) out[c] = sat16(rshift_round(acc[c], sh_qk));
                store_i16<CFG_MAX_DIM>(mem, row + C * 2, C, out);
                atb_acc_read(tok, true, j, C, acc);
                for (int c = 0; c < CFG_MAX_DIM; c++) out[c] = sat16(rshift_round(acc[c], sh_v));
                store_i16<CFG_MAX_DIM>(mem, row + 2 * C * 2, C, out);
            }
        }
    }
    fmt_write(mem, d, 1, f);
    return ST_DONE;
}

#endif
