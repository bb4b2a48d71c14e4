// Backward of OP_LINEAR (y = x W^T + b): dx = dy W, dW = dy^T x, db = sum dy
// (reference ops_backward.linear_backward), each in its own dynamic format.
//
// Both products run on the forward's matrix core (mc_accumulate, mac_array.h): an output-
// stationary MC_ROWS x MC_COLS tile of 16x16-bit products with 48-bit accumulators, one
// reduction step per cycle, drained one tile row per cycle. Only the operand feed differs
// (dx: dy's token rows against a W panel; dW: a dy column panel against x's token rows, the
// reduction running over tokens).
//
// Dynamic formats: each op runs its tiles twice (grad_format.h). Pass 0 drains every tile
// into the running maximum only; pass 1 recomputes the tiles and writes them requantised.
// Both products are exact in 48 bits (|dx| <= N 2^30 < 2^41, |dW| <= M 2^30 < 2^38), so no
// accumulator saturates and the result equals the reference's int64 matmul.
#ifndef TRILEVEL_OPS_LINEAR_BACKWARD_H
#define TRILEVEL_OPS_LINEAR_BACKWARD_H

#include "../buffers.h"
#include "../desc.h"
#include "../mac_array.h"
#include "../memory.h"
#include "grad_format.h"

static const int LIN_COL_TILES_K = (CFG_MAX_K + CFG_MC_COLS - 1) / CFG_MC_COLS;  // column tiles of dx, dW

/// Largest |a| over the first n lanes of one drained tile row (a comparator tree in hardware).
template <int LANES>
inline wide_t row_max(const acc_t a[LANES], int n) {
#pragma HLS INLINE
    wide_t m = 0;
    for (int c = 0; c < LANES; c++)
        if (c < n) m = max_abs(m, a[c]);
    return m;
}

/// OP_LINEAR_BWD_DX: dx = dy W.
/// X:  dy (M tokens, N features) int16, row stride XS, format from slot F0.
/// W:  w (N, K) int16, row stride WS (read through the weight port), at SH0 = fw.
/// Y:  dx (M, K) int16, row stride YS, at the dynamic format written to slot F1.
/// AUX3: the format table.
/// Buffers (buffers.h): dy in the xpanel as LINEAR keeps X (token m in bank m % MC_ROWS, its
/// beats from word (m / MC_ROWS) LIN_K_WORDS); the W panel of one column tile (W[n][k0 ..
/// k0 + MC_COLS) for every n) in token-store bank 0: step n's DX_BEATS beats in beat slots
/// (n % DX_STEPS) DX_BEATS .. of row n / DX_STEPS, so a step reads DX_BEATS distinct slot memories.
inline ap_uint<32> op_linear_bwd_dx(word_t* mem, const word_t* wmem, ap_uint<32> mem_bytes, const Desc& d,
                                    EngineBuffers& buf) {
    const int M = int(d.u(DW_M));
    const int N = int(d.u(DW_N));
    const int K = int(d.u(DW_K));
    const int fw = d.s(DW_SH0);
    if (M < 1 || M > CFG_MAX_TOKENS || N < 1 || N > CFG_MAX_OUT || K < 1 || K > CFG_MAX_K) return ST_BAD_SIZE;
    if (!frac_ok(fw)) return ST_BAD_PARAM;
    if (!tensor_ok(d.u(DW_X), M, d.u(DW_XS), N, 2, mem_bytes) ||
        !tensor_ok(d.u(DW_W), N, d.u(DW_WS), K, 2, mem_bytes) ||
        !tensor_ok(d.u(DW_Y), M, d.u(DW_YS), K, 2, mem_bytes) || !fmt_table_ok(d, mem_bytes))
        return ST_BAD_ADDRESS;
    const int fdy = fmt_read(mem, d, 0);
    if (!frac_ok(fdy)) return ST_BAD_PARAM;
    const int facc = fdy + fw;
    word_t(&xp)[CFG_MC_ROWS][XP_DEPTH] = buf.xpanel;
    tok_bank_t& wp = buf.tok[0];
    acc_t(&acc)[CFG_MC_ROWS][CFG_MC_COLS] = buf.mc_acc;
    q16_t out[CFG_MC_COLS];
#pragma HLS ARRAY_PARTITION variable = out complete dim = 1

    // dy stays on chip for both passes; a W panel (N x MC_COLS) is reused by every row tile.
    const int n_words = (N + CFG_I16_PER_WORD - 1) / CFG_I16_PER_WORD;
LBX_LOAD_DY:
    for (int m = 0; m < M; m++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
        const ap_uint<32> src = (d.u(DW_X) + ap_uint<32>(m) * d.u(DW_XS) * 2) / CFG_AXI_BYTES;
        const int bank = m % CFG_MC_ROWS, word0 = (m / CFG_MC_ROWS) * LIN_K_WORDS;
        SIM_LOOP(CNT_MEM_READ, n_words);
    LBX_LOAD_DY_BEATS:  // one gmem_a beat (a burst along the row) into one bank per cycle: II=1
        for (int b = 0; b < n_words; b++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = LIN_K_WORDS
            xp[bank][word0 + b] = mem[src + b];
        }
    }
    wide_t mx = 0;
    int f = ABI_FRAC_MAX, shift = 0;
LBX_PASS:
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            f = dynamic_frac(mx, facc);
            shift = requant_shift(facc, f);
        }
    LBX_COL_TILES:
        for (int k0 = 0; k0 < K; k0 += CFG_MC_COLS) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = LIN_COL_TILES_K
            const int kc = K - k0 < CFG_MC_COLS ? K - k0 : CFG_MC_COLS;
            const int k_words = (kc + CFG_I16_PER_WORD - 1) / CFG_I16_PER_WORD;
        LBX_LOAD_W:
            for (int n = 0; n < N; n++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_OUT
                const ap_uint<32> src = (d.u(DW_W) + (ap_uint<32>(n) * d.u(DW_WS) + k0) * 2) / CFG_AXI_BYTES;
                const int row = n / DX_STEPS, slot0 = (n % DX_STEPS) * DX_BEATS;
                SIM_LOOP(CNT_MEM_READ, k_words);
            LBX_LOAD_W_BEATS:  // one gmem_w beat into one slot memory per cycle: II=1
                for (int q = 0; q < k_words; q++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = DX_BEATS
                    wp[row][slot0 + q] = wmem[src + q];
                }
            }
        LBX_ROW_TILES:
            for (int m0 = 0; m0 < M; m0 += CFG_MC_ROWS) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = LIN_ROW_TILES
                const int word0 = (m0 / CFG_MC_ROWS) * LIN_K_WORDS;
                SIM_LOOP(pass == 0 ? CNT_LBX_MAC_MAXP : CNT_LBX_MAC, N);
            LBX_MAC:  // one reduction step n per cycle on the matrix core: II=1 (each xpanel
                      // bank gives its tile row's beat, step n's DX_BEATS W beats sit in
                      // distinct slot memories; mc_accumulate is II=1)
                for (int n = 0; n < N; n++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_OUT
                    q16_t a[CFG_MC_ROWS], b[CFG_MC_COLS];
                    for (int r = 0; r < CFG_MC_ROWS; r++)
                        a[r] = beat_lane(xp[r][word0 + n / CFG_I16_PER_WORD], n % CFG_I16_PER_WORD);
                    for (int c = 0; c < CFG_MC_COLS; c++)
                        b[c] = beat_lane(wp[n / DX_STEPS][(n % DX_STEPS) * DX_BEATS + c / CFG_I16_PER_WORD],
                                         c % CFG_I16_PER_WORD);
                    mc_accumulate(a, b, n == 0, acc);
                }
                const int rows = M - m0 < CFG_MC_ROWS ? M - m0 : CFG_MC_ROWS;
                SIM_LOOP(pass == 0 ? CNT_LBX_DRAIN_MAXP : CNT_LBX_DRAIN, rows);
            LBX_DRAIN:  // one tile row per iteration: MC_COLS lanes into the max (pass 0) or
                        // requantised and written as kc / 8 beats (pass 1, MEM_WRITE)
                for (int r = 0; r < rows; r++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MC_ROWS
                    if (pass == 0) {
                        wide_t rm = row_max<CFG_MC_COLS>(acc[r], kc);
                        if (rm > mx) mx = rm;
                    } else {
                        for (int c = 0; c < CFG_MC_COLS; c++) out[c] = sat16(rshift_round(acc[r][c], shift));
                        store_i16<CFG_MC_COLS>(mem, d.u(DW_Y) + (ap_uint<32>(m0 + r) * d.u(DW_YS) + k0) * 2, kc, out);
                    }
                }
            }
        }
    }
    fmt_write(mem, d, 1, f);
    return ST_DONE;
}

/// OP_LINEAR_BWD_DW: dW = dy^T x summed over the M tokens; db = sum dy (flag BIAS).
/// X:  dy (M tokens, N features) int16, row stride XS, format from slot F0.
/// W:  x, the forward's input (M, K) int16, row stride WS, at SH0 = fx.
/// Y:  dW (N, K) int16, row stride YS, dynamic format -> slot F1.
/// B:  db (N) int16 if flag BIAS, dynamic format -> slot F2.
/// AUX3: the format table.
/// Buffers (buffers.h): x in the xpanel by beats (beat b of token m in bank b % MC_ROWS, word
/// m XW_ROW + b / MC_ROWS), so the MC_COLS / 8 beats of one token's column tile come from
/// distinct banks; a dy panel (MC_ROWS features of every token) in token-store bank 0: token
/// m's DW_BEATS beats in beat slots (m % DW_STEPS) DW_BEATS .. of row m / DW_STEPS.
inline ap_uint<32> op_linear_bwd_dw(word_t* mem, ap_uint<32> mem_bytes, const Desc& d, EngineBuffers& buf) {
    const int M = int(d.u(DW_M));
    const int N = int(d.u(DW_N));
    const int K = int(d.u(DW_K));
    const int fx = d.s(DW_SH0);
    const bool bias = d.has(FLAG_BIAS);
    if (M < 1 || M > CFG_MAX_TOKENS || N < 1 || N > CFG_MAX_OUT || K < 1 || K > CFG_MAX_K) return ST_BAD_SIZE;
    if (!frac_ok(fx)) return ST_BAD_PARAM;
    if (!tensor_ok(d.u(DW_X), M, d.u(DW_XS), N, 2, mem_bytes) ||
        !tensor_ok(d.u(DW_W), M, d.u(DW_WS), K, 2, mem_bytes) ||
        !tensor_ok(d.u(DW_Y), N, d.u(DW_YS), K, 2, mem_bytes) ||
        (bias && !tensor_ok(d.u(DW_B), 1, N, N, 2, mem_bytes)) || !fmt_table_ok(d, mem_bytes))
        return ST_BAD_ADDRESS;
    const int fdy = fmt_read(mem, d, 0);
    if (!frac_ok(fdy)) return ST_BAD_PARAM;
    const int facc = fdy + fx;
    word_t(&xp)[CFG_MC_ROWS][XP_DEPTH] = buf.xpanel;
    tok_bank_t& dyp = buf.tok[0];
    acc_t(&acc)[CFG_MC_ROWS][CFG_MC_COLS] = buf.mc_acc;
    // db: |sum dy| <= M 2^15 < 2^23, so 32 bits hold it exactly
    static i32_t db[CFG_MAX_OUT];
#pragma HLS ARRAY_PARTITION variable = db cyclic factor = CFG_MC_ROWS dim = 1
    q16_t out[CFG_MC_COLS];
#pragma HLS ARRAY_PARTITION variable = out complete dim = 1

    const int k_words = (K + CFG_I16_PER_WORD - 1) / CFG_I16_PER_WORD;
LBW_LOAD_X:
    for (int m = 0; m < M; m++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
        const ap_uint<32> src = (d.u(DW_W) + ap_uint<32>(m) * d.u(DW_WS) * 2) / CFG_AXI_BYTES;
        SIM_LOOP(CNT_MEM_READ, k_words);
    LBW_LOAD_X_BEATS:  // one gmem_a beat into one bank per cycle: II=1
        for (int b = 0; b < k_words; b++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = LIN_K_WORDS
            xp[b % CFG_MC_ROWS][m * XW_ROW + b / CFG_MC_ROWS] = mem[src + b];
        }
    }
    wide_t mx = 0, mb = 0;
    int f = ABI_FRAC_MAX, shift = 0;
LBW_PASS:
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            f = dynamic_frac(mx, facc);
            shift = requant_shift(facc, f);
        }
    LBW_ROW_TILES:
        for (int n0 = 0; n0 < N; n0 += CFG_MC_ROWS) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_OUT / CFG_MC_ROWS
            const int nc = N - n0 < CFG_MC_ROWS ? N - n0 : CFG_MC_ROWS;
            const int off = n0 % CFG_I16_PER_WORD;  // lane of feature n0 in its beat
            const int p_words = (off + nc + CFG_I16_PER_WORD - 1) / CFG_I16_PER_WORD;
        LBW_LOAD_DY:
            for (int m = 0; m < M; m++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
                const ap_uint<32> src = (d.u(DW_X) + (ap_uint<32>(m) * d.u(DW_XS) + n0 - off) * 2) / CFG_AXI_BYTES;
                const int row = m / DW_STEPS, slot0 = (m % DW_STEPS) * DW_BEATS;
                SIM_LOOP(CNT_MEM_READ, p_words);
            LBW_LOAD_DY_BEATS:  // one gmem_a beat into one slot memory per cycle: II=1
                for (int q = 0; q < p_words; q++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = DW_BEATS
                    dyp[row][slot0 + q] = mem[src + q];
                }
            }
            if (pass == 0 && bias) {
                wide_t part[CFG_MC_ROWS];
#pragma HLS ARRAY_PARTITION variable = part complete dim = 1
                for (int c = 0; c < CFG_MC_ROWS; c++) part[c] = 0;
                SIM_LOOP(CNT_LBW_DB, M);
            LBW_DB:  // one token's MC_ROWS features per cycle (DW_BEATS slot memories) into
                     // MC_ROWS sums: II=1 (each sum is one adder fed back to itself)
                for (int m = 0; m < M; m++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
                    for (int c = 0; c < CFG_MC_ROWS; c++) {
                        const int l = off + c;
                        part[c] += beat_lane(dyp[m / DW_STEPS][(m % DW_STEPS) * DW_BEATS + l / CFG_I16_PER_WORD],
                                             l % CFG_I16_PER_WORD);
                    }
                }
                for (int c = 0; c < CFG_MC_ROWS; c++)
                    if (c < nc) {
                        db[n0 + c] = i32_t(part[c]);
                        mb = max_abs(mb, part[c]);
                    }
            }
        LBW_COL_TILES:
            for (int k0 = 0; k0 < K; k0 += CFG_MC_COLS) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = LIN_COL_TILES_K
                const int kc = K - k0 < CFG_MC_COLS ? K - k0 : CFG_MC_COLS;
                const int kb0 = k0 / CFG_I16_PER_WORD;  // first beat of the column tile
                SIM_LOOP(pass == 0 ? CNT_LBW_MAC_MAXP : CNT_LBW_MAC, M);
            LBW_MAC:  // one token per cycle on the matrix core: II=1 (the dy panel's DW_BEATS
                      // slot memories give the tile's rows, the column tile's MC_COLS / 8 x
                      // beats sit in distinct xpanel banks; mc_accumulate is II=1)
                for (int m = 0; m < M; m++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
                    q16_t a[CFG_MC_ROWS], b[CFG_MC_COLS];
                    for (int r = 0; r < CFG_MC_ROWS; r++) {
                        const int l = off + r;
                        a[r] = beat_lane(dyp[m / DW_STEPS][(m % DW_STEPS) * DW_BEATS + l / CFG_I16_PER_WORD],
                                         l % CFG_I16_PER_WORD);
                    }
                    for (int c = 0; c < CFG_MC_COLS; c++) {
                        const int beat = kb0 + c / CFG_I16_PER_WORD;
                        b[c] = beat_lane(xp[beat % CFG_MC_ROWS][m * XW_ROW + beat / CFG_MC_ROWS], c % CFG_I16_PER_WORD);
                    }
                    mc_accumulate(a, b, m == 0, acc);
                }
                SIM_LOOP(pass == 0 ? CNT_LBW_DRAIN_MAXP : CNT_LBW_DRAIN, nc);
            LBW_DRAIN:  // one tile row per iteration, as LBX_DRAIN
                for (int r = 0; r < nc; r++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MC_ROWS
                    if (pass == 0) {
                        wide_t rm = row_max<CFG_MC_COLS>(acc[r], kc);
                        if (rm > mx) mx = rm;
                    } else {
                        for (int c = 0; c < CFG_MC_COLS; c++) out[c] = sat16(rshift_round(acc[r][c], shift));
                        store_i16<CFG_MC_COLS>(mem, d.u(DW_Y) + (ap_uint<32>(n0 + r) * d.u(DW_YS) + k0) * 2, kc, out);
                    }
                }
            }
        }
    }
    fmt_write(mem, d, 1, f);
    if (bias) {
        // db was summed on chip in pass 0: one pass, written after its maximum is known
        const int fb = dynamic_frac(mb, fdy);
        const int sb = requant_shift(fdy, fb);
        static q16_t dbq[CFG_MAX_OUT];
        SIM_LOOP(CNT_LBW_DB_OUT, N);
    LBW_DB_OUT:  // one element per cycle, independent: II=1
        for (int n = 0; n < N; n++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_OUT
            dbq[n] = sat16(rshift_round(db[n], sb));
        }
        store_i16<CFG_MAX_OUT>(mem, d.u(DW_B), N, dbq);
        fmt_write(mem, d, 2, fb);
    }
    return ST_DONE;
}

#endif
