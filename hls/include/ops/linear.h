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
#ifndef TRILEVEL_OPS_LINEAR_H
#define TRILEVEL_OPS_LINEAR_H

#include "../buffers.h"
#include "../desc.h"
#include "../mac_array.h"
#include "../memory.h"

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
    static q16_t bias[CFG_MAX_OUT];
#pragma HLS ARRAY_PARTITION variable = bias cyclic factor = CFG_VU_LANES

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

#endif
