// OP_LINEAR: Y = requant(sat48(X W^T + rshift_round(B, SH0)), SH1) on the matrix core.
//
// The matrix core is an output-stationary CFG_MC_ROWS x CFG_MC_COLS tile of 16x16-bit products
// (mac_array.h) with 48-bit accumulators: one output tile of MC_ROWS token rows by MC_COLS
// output features, K streamed one step per cycle. Loop order, chosen so that every weight is
// read from DDR exactly once per op:
//
//   X (M x K) -> xpanel, once per op (gmem_a)
//   for each column tile jt of MC_COLS output features:
//       [weight tile jt+1 streams from wmem (gmem_w) into the other weight tile]
//       for each row tile of MC_ROWS tokens:  mc_tile (K cycles), then requantise + store rows
//
// On-chip buffers (buffers.h) hold whole 128-bit beats: a load writes one beat per cycle into
// one bank, and the MAC loop reads one beat per bank per cycle and picks lane k % 8 of it. A
// buffer of q16 values would need a second cyclic partition by 8 to take a beat per cycle (8x
// the banks). X lives in the xpanel (bank r % MC_ROWS, row r / MC_ROWS's LIN_K_WORDS beats);
// the two weight tiles live in the token store, the attention's K/V memories, which LINEAR
// does not otherwise use: tile half h is the bank pair (2h, 2h + 1), W row j of the tile in
// beat slot j % WT_SLOTS of bank 2h + j / WT_SLOTS, its beat b in row b.
//
// The backward (OP_LINEAR_BWD_DX, OP_LINEAR_BWD_DW) follows the forward below, on the same matrix core.
#ifndef TRILEVEL_OPS_LINEAR_H
#define TRILEVEL_OPS_LINEAR_H

#include "../buffers.h"
#include "../desc.h"
#include "../mac_array.h"
#include "../memory.h"
#include "grad_format.h"

static const int LIN_COL_TILES = (CFG_MAX_OUT + CFG_MC_COLS - 1) / CFG_MC_COLS;

static_assert(CFG_MC_COLS % CFG_VU_LANES == 0, "requantisation groups must tile an output tile");
static_assert(CFG_MC_COLS % CFG_I16_PER_WORD == 0, "column tiles must start on a beat");

typedef word_t lin_xbuf_t[CFG_MC_ROWS][XP_DEPTH];  // bank i: X rows i, i + MC_ROWS, ... (beats)

/// The MAC array: acc[i][j] = sum_k x[i][k] w[j][k] over k < k_len for one output tile.
/// xb:     X beats, bank i holds tile row i; this tile's rows start at beat x_word0 of each bank.
/// wlo/whi: the W tile's bank pair (int16 at fw): row j in slot j % WT_SLOTS of wlo (j < WT_SLOTS)
///         or whi, its beat b in row b.
/// acc:    (MC_ROWS, MC_COLS) exact sums at fx + fw (|acc| < K 2^30 < 2^41: never saturates).
/// The products and their accumulation come from mc_accumulate (mac_array.h): the engine's
/// one multiplier array and its one set of 48-bit lane adders, which the attention engine and
/// the backward's matmuls share. (The DSP48E2's own P-register accumulation is given up for
/// the sharing: the 48-bit adders sit in fabric.)
inline void mc_tile(const lin_xbuf_t xb, int x_word0, const tok_bank_t wlo, const tok_bank_t whi, int k_len,
                    acc_t acc[CFG_MC_ROWS][CFG_MC_COLS]) {
#pragma HLS INLINE off
#pragma HLS ARRAY_PARTITION variable = xb complete dim = 1
#pragma HLS ARRAY_PARTITION variable = wlo complete dim = 2
#pragma HLS ARRAY_PARTITION variable = whi complete dim = 2
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 0
    // II=1: per cycle each of the MC_ROWS X banks and each of the MC_COLS W slot memories
    // (complete partitions) is read once (one beat; the lane is picked by a mux on k % 8);
    // mc_accumulate is itself II=1 (its accumulators depend only on themselves one step
    // earlier). One iteration: one k step of every MAC in the tile.
    SIM_LOOP(CNT_LIN_MAC, k_len);
MC_K:
    for (int k = 0; k < k_len; k++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_K
        const int word = k / CFG_I16_PER_WORD;
        const int lane = k % CFG_I16_PER_WORD;
        q16_t xv[CFG_MC_ROWS];
        q16_t wv[CFG_MC_COLS];
    MC_READ_X:
        for (int i = 0; i < CFG_MC_ROWS; i++) xv[i] = beat_lane(xb[i][x_word0 + word], lane);
    MC_READ_W:
        for (int j = 0; j < CFG_MC_COLS; j++)
            wv[j] = beat_lane(j < WT_SLOTS ? wlo[word][j] : whi[word][j - WT_SLOTS], lane);
        mc_accumulate(xv, wv, k == 0, acc);  // lane (i, j) multiplies x row i by weight column j
    }
}

/// Streams the W rows of column tile jt (n_cols <= MC_COLS rows of k_words beats) into the
/// tile's bank pair wlo/whi.
inline void lin_load_w(const word_t* wmem, addr_t w_addr, int ws, int jt, int n_cols, int k_words, tok_bank_t wlo,
                       tok_bank_t whi) {
#pragma HLS INLINE off
#pragma HLS ARRAY_PARTITION variable = wlo complete dim = 2
#pragma HLS ARRAY_PARTITION variable = whi complete dim = 2
LIN_LOAD_W_ROWS:
    for (int j = 0; j < n_cols; j++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MC_COLS
        const addr_t row = w_addr / CFG_AXI_BYTES + addr_t(jt * CFG_MC_COLS + j) * ws / CFG_I16_PER_WORD;
        // II=1: one wmem beat read (a burst along the row) and one write into slot memory j.
        // One iteration: one beat of one weight row.
        SIM_LOOP(CNT_LIN_LOAD_W, k_words);
    LIN_LOAD_W:
        for (int b = 0; b < k_words; b++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = LIN_K_WORDS
            if (j < WT_SLOTS)
                wlo[b][j] = wmem[row + b];
            else
                whi[b][j - WT_SLOTS] = wmem[row + b];
        }
    }
}

/// Requantises and stores the output tile (rows it*MC_ROWS.., columns jt*MC_COLS..).
inline void lin_store_tile(word_t* mem, const acc_t acc[CFG_MC_ROWS][CFG_MC_COLS], const q16_t bias[CFG_MAX_OUT],
                           bool has_bias, int sh0, int sh1, addr_t y_addr, int ys, int it, int jt, int n_rows,
                           int n_cols) {
#pragma HLS INLINE
    q16_t yrow[CFG_MC_COLS];
#pragma HLS ARRAY_PARTITION variable = yrow cyclic factor = CFG_VU_LANES
    const int groups = (n_cols + CFG_VU_LANES - 1) / CFG_VU_LANES;
LIN_STORE_ROWS:
    for (int i = 0; i < n_rows; i++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MC_ROWS
        // II=1: acc is registers (one VU_LANES-wide mux per iteration), bias and yrow are
        // cyclic-partitioned by VU_LANES so the VU_LANES consecutive columns of one group sit
        // in distinct banks; no loop-carried dependence. One iteration: VU_LANES outputs.
        SIM_LOOP(CNT_LIN_REQUANT, groups);
    LIN_REQUANT:
        for (int g = 0; g < groups; g++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MC_COLS / CFG_VU_LANES
        LIN_REQUANT_LANES:
            for (int l = 0; l < CFG_VU_LANES; l++) {
                const int j = g * CFG_VU_LANES + l;
                wide_t s = wide_t(acc[i][j]);
                const int col = jt * CFG_MC_COLS + j;
                if (has_bias && col < CFG_MAX_OUT) s += rshift_round(wide_t(bias[col]), sh0);
                yrow[j] = requant(sat_acc(s), sh1);
            }
        }
        const addr_t row = y_addr + (addr_t(it * CFG_MC_ROWS + i) * ys + jt * CFG_MC_COLS) * 2;
        store_i16<CFG_MC_COLS>(mem, row, n_cols, yrow);
    }
}

/// Computes and stores every row tile of column tile jt from the weights in wb.
inline void lin_col_tile(word_t* mem, const lin_xbuf_t xb, const tok_bank_t wlo, const tok_bank_t whi,
                         const q16_t bias[CFG_MAX_OUT], bool has_bias, int sh0, int sh1, addr_t y_addr, int ys, int m,
                         int n, int k, int jt, acc_t acc[CFG_MC_ROWS][CFG_MC_COLS]) {
#pragma HLS INLINE off
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 0
    const int n_cols = n - jt * CFG_MC_COLS < CFG_MC_COLS ? n - jt * CFG_MC_COLS : CFG_MC_COLS;
    const int row_tiles = (m + CFG_MC_ROWS - 1) / CFG_MC_ROWS;
LIN_ROW_TILES_LOOP:
    for (int it = 0; it < row_tiles; it++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = LIN_ROW_TILES
        // The requantisation of a tile does not overlap the next tile's K loop (one set of
        // accumulators): it costs n_rows * (MC_COLS/VU_LANES + MC_COLS/8) cycles per tile.
        mc_tile(xb, it * LIN_K_WORDS, wlo, whi, k, acc);
        const int n_rows = m - it * CFG_MC_ROWS < CFG_MC_ROWS ? m - it * CFG_MC_ROWS : CFG_MC_ROWS;
        lin_store_tile(mem, acc, bias, has_bias, sh0, sh1, y_addr, ys, it, jt, n_rows, n_cols);
    }
}

/// X (M, K) int16 at fx, row stride XS; W (N, K) int16 at fw, row stride WS (read through wmem);
/// B (N) int16 at fb when flag BIAS; Y (M, N) int16 at fy, row stride YS.
/// SH0 = fb - (fx + fw) (bias into the accumulator), SH1 = fx + fw - fy.
/// M <= CFG_MAX_TOKENS, K <= CFG_MAX_K, N <= CFG_MAX_OUT.
inline ap_uint<32> op_linear(word_t* mem, const word_t* wmem, ap_uint<32> mem_bytes, const Desc& d,
                             EngineBuffers& buf) {
    const ap_uint<32> m_u = d.u(DW_M), n_u = d.u(DW_N), k_u = d.u(DW_K);
    if (m_u == 0 || m_u > CFG_MAX_TOKENS || n_u == 0 || n_u > CFG_MAX_OUT || k_u == 0 || k_u > CFG_MAX_K)
        return ST_BAD_SIZE;
    const int m = int(m_u), n = int(n_u), k = int(k_u);
    const bool has_bias = d.has(FLAG_BIAS);
    const int xs = int(d.u(DW_XS)), ws = int(d.u(DW_WS)), ys = int(d.u(DW_YS));
    if (!tensor_ok(d.u(DW_X), m, d.u(DW_XS), k, 2, mem_bytes) ||
        !tensor_ok(d.u(DW_W), n, d.u(DW_WS), k, 2, mem_bytes) ||
        !tensor_ok(d.u(DW_Y), m, d.u(DW_YS), n, 2, mem_bytes) ||
        (has_bias && !tensor_ok(d.u(DW_B), 1, n, n, 2, mem_bytes)))
        return ST_BAD_ADDRESS;
    const int sh0 = d.s(DW_SH0), sh1 = d.s(DW_SH1);
    const int k_words = (k + CFG_I16_PER_WORD - 1) / CFG_I16_PER_WORD;
    const addr_t x_addr = d.u(DW_X), w_addr = d.u(DW_W), y_addr = d.u(DW_Y);

    word_t(&xbuf)[CFG_MC_ROWS][XP_DEPTH] = buf.xpanel;
    // Ping-pong weight tiles (explicit, not DATAFLOW): in each column-tile iteration the compute
    // call reads one bank pair of the token store while lin_load_w fills the other; the two
    // calls share no memory (the bank dimension is completely partitioned and each call gets
    // its banks by constant index) and use different m_axi bundles (gmem_a for X/Y, gmem_w for
    // W), so the scheduler may start both in the same state (not checked by a synthesis run
    // yet; if it serialises them, the pair goes into a DATAFLOW region). C-sim runs them in
    // turn: same result.
    vrow_t& bias = buf.vrow[0];  // the vector rows (buffers.h), cyclic by VU_LANES

    // X on chip once per op: row r into bank r % MC_ROWS, slot r / MC_ROWS.
LIN_LOAD_X_ROWS:
    for (int r = 0; r < m; r++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
        const addr_t src = x_addr / CFG_AXI_BYTES + addr_t(r) * xs / CFG_I16_PER_WORD;
        const int bank = r % CFG_MC_ROWS, slot = (r / CFG_MC_ROWS) * LIN_K_WORDS;
        // II=1: one gmem_a beat read (a burst along the row) and one write into one bank.
        // One iteration: one beat of one X row.
        SIM_LOOP(CNT_LIN_LOAD_X, k_words);
    LIN_LOAD_X:
        for (int b = 0; b < k_words; b++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = LIN_K_WORDS
            xbuf[bank][slot + b] = mem[src + b];
        }
    }
    if (has_bias) load_i16<CFG_MAX_OUT>(wmem, d.u(DW_B), n, bias);

    const int col_tiles = (n + CFG_MC_COLS - 1) / CFG_MC_COLS;
    lin_load_w(wmem, w_addr, ws, 0, n < CFG_MC_COLS ? n : CFG_MC_COLS, k_words, buf.tok[0], buf.tok[1]);
LIN_COL_TILES_LOOP:
    for (int jt = 0; jt < col_tiles; jt++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = LIN_COL_TILES
        const int next = jt + 1;
        const int next_cols = n - next * CFG_MC_COLS < CFG_MC_COLS ? n - next * CFG_MC_COLS : CFG_MC_COLS;
        if (jt % 2 == 0) {
            lin_col_tile(mem, xbuf, buf.tok[0], buf.tok[1], bias, has_bias, sh0, sh1, y_addr, ys, m, n, k, jt,
                         buf.mc_acc);
            if (next < col_tiles) lin_load_w(wmem, w_addr, ws, next, next_cols, k_words, buf.tok[2], buf.tok[3]);
        } else {
            lin_col_tile(mem, xbuf, buf.tok[2], buf.tok[3], bias, has_bias, sh0, sh1, y_addr, ys, m, n, k, jt,
                         buf.mc_acc);
            if (next < col_tiles) lin_load_w(wmem, w_addr, ws, next, next_cols, k_words, buf.tok[0], buf.tok[1]);
        }
    }
    return ST_DONE;
}

// ---------------------------------------------------------------- backward

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
    // db in a vector row (buffers.h): |sum dy| <= M 2^15 < 2^23, so 32 bits hold it exactly
    vrow32_t& db = buf.vrow32[0];
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
        vrow_t& dbq = buf.vrow[0];
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
