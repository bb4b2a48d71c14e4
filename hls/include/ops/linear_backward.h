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

#include "../desc.h"
#include "../mac_array.h"
#include "../memory.h"
#include "grad_format.h"

// Token-side buffers hold whole MC_ROWS tiles (rows past M are never drained).
#define LB_TOKENS_PAD (((CFG_MAX_TOKENS + CFG_MC_ROWS - 1) / CFG_MC_ROWS) * CFG_MC_ROWS)
// x's columns padded to whole MC_COLS tiles (columns past K are never drained).
#define LB_K_PAD (((CFG_MAX_K + CFG_MC_COLS - 1) / CFG_MC_COLS) * CFG_MC_COLS)

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
inline ap_uint<32> op_linear_bwd_dx(word_t* mem, const word_t* wmem, ap_uint<32> mem_bytes, const Desc& d) {
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

    // dy stays on chip for both passes; rows cyclic over MC_ROWS banks, so the MC_ROWS rows of
    // a tile are read in one cycle. The W panel (N x MC_COLS) is reused by every row tile.
    static q16_t dy[LB_TOKENS_PAD][CFG_MAX_OUT];
#pragma HLS ARRAY_PARTITION variable = dy cyclic factor = CFG_MC_ROWS dim = 1
    static q16_t wp[CFG_MAX_OUT][CFG_MC_COLS];
#pragma HLS ARRAY_PARTITION variable = wp complete dim = 2
    acc_t acc[CFG_MC_ROWS][CFG_MC_COLS];
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 0
    q16_t out[CFG_MC_COLS];
#pragma HLS ARRAY_PARTITION variable = out complete dim = 1

LBX_LOAD_DY:
    for (int m = 0; m < M; m++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
        load_i16<CFG_MAX_OUT>(mem, d.u(DW_X) + ap_uint<32>(m) * d.u(DW_XS) * 2, N, dy[m]);
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
#pragma HLS LOOP_TRIPCOUNT min = 1 max = LB_K_PAD / CFG_MC_COLS
            const int kc = K - k0 < CFG_MC_COLS ? K - k0 : CFG_MC_COLS;
        LBX_LOAD_W:
            for (int n = 0; n < N; n++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_OUT
                load_i16<CFG_MC_COLS>(wmem, d.u(DW_W) + (ap_uint<32>(n) * d.u(DW_WS) + k0) * 2, kc, wp[n]);
            }
        LBX_ROW_TILES:
            for (int m0 = 0; m0 < M; m0 += CFG_MC_ROWS) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = LB_TOKENS_PAD / CFG_MC_ROWS
                SIM_LOOP(pass == 0 ? CNT_LBX_MAC_MAXP : CNT_LBX_MAC, N);
            LBX_MAC:  // one reduction step n per cycle on the matrix core: II=1 (dy banks give
                      // the tile's rows, wp's columns are registers; mc_accumulate is II=1)
                for (int n = 0; n < N; n++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_OUT
                    q16_t a[CFG_MC_ROWS], b[CFG_MC_COLS];
                    for (int r = 0; r < CFG_MC_ROWS; r++) a[r] = dy[m0 + r][n];
                    for (int c = 0; c < CFG_MC_COLS; c++) b[c] = wp[n][c];
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
inline ap_uint<32> op_linear_bwd_dw(word_t* mem, ap_uint<32> mem_bytes, const Desc& d) {
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

    // x stays on chip (token rows, columns cyclic over MC_COLS banks); a dy column panel of
    // MC_ROWS features is loaded per row tile and reused by every column tile.
    static q16_t xb[CFG_MAX_TOKENS][LB_K_PAD];
#pragma HLS ARRAY_PARTITION variable = xb cyclic factor = CFG_MC_COLS dim = 2
    static q16_t dyp[CFG_MAX_TOKENS][CFG_MC_ROWS];
#pragma HLS ARRAY_PARTITION variable = dyp complete dim = 2
    static wide_t db[CFG_MAX_OUT];
#pragma HLS ARRAY_PARTITION variable = db cyclic factor = CFG_MC_ROWS dim = 1
    acc_t acc[CFG_MC_ROWS][CFG_MC_COLS];
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 0
    q16_t out[CFG_MC_COLS];
#pragma HLS ARRAY_PARTITION variable = out complete dim = 1

LBW_LOAD_X:
    for (int m = 0; m < M; m++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
        load_i16<LB_K_PAD>(mem, d.u(DW_W) + ap_uint<32>(m) * d.u(DW_WS) * 2, K, xb[m]);
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
        LBW_LOAD_DY:
            for (int m = 0; m < M; m++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
                load_i16<CFG_MC_ROWS>(mem, d.u(DW_X) + (ap_uint<32>(m) * d.u(DW_XS) + n0) * 2, nc, dyp[m]);
            }
            if (pass == 0 && bias) {
                wide_t part[CFG_MC_ROWS];
#pragma HLS ARRAY_PARTITION variable = part complete dim = 1
                for (int c = 0; c < CFG_MC_ROWS; c++) part[c] = 0;
                SIM_LOOP(CNT_LBW_DB, M);
            LBW_DB:  // one token's MC_ROWS features per cycle into MC_ROWS 64-bit sums: II=1
                     // (each sum is one adder fed back to itself)
                for (int m = 0; m < M; m++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
                    for (int c = 0; c < CFG_MC_ROWS; c++) part[c] += dyp[m][c];
                }
                for (int c = 0; c < CFG_MC_ROWS; c++)
                    if (c < nc) {
                        db[n0 + c] = part[c];
                        mb = max_abs(mb, part[c]);
                    }
            }
        LBW_COL_TILES:
            for (int k0 = 0; k0 < K; k0 += CFG_MC_COLS) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = LB_K_PAD / CFG_MC_COLS
                const int kc = K - k0 < CFG_MC_COLS ? K - k0 : CFG_MC_COLS;
                SIM_LOOP(pass == 0 ? CNT_LBW_MAC_MAXP : CNT_LBW_MAC, M);
            LBW_MAC:  // one token per cycle on the matrix core: II=1 (dyp's row is registers,
                      // xb's MC_COLS banks give the tile's columns; mc_accumulate is II=1)
                for (int m = 0; m < M; m++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
                    q16_t a[CFG_MC_ROWS], b[CFG_MC_COLS];
                    for (int r = 0; r < CFG_MC_ROWS; r++) a[r] = dyp[m][r];
                    for (int c = 0; c < CFG_MC_COLS; c++) b[c] = xb[m][k0 + c];
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
