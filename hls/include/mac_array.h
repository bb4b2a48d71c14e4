// The engine's one array of multipliers: every matmul multiplies through mac_products().
//
// The matrix core (LINEAR, and the backward's dX = dY W and dW = dY^T X) and the attention row
// engines (forward q k^T and p v; backward dO v^T, p^T dO, dS k and dS^T q) map their operands
// onto the same MAC_LANES 16x16-bit multipliers, one DSP48E2 each. The top function pins this to
// one instance:
//   #pragma HLS ALLOCATION function instances = mac_products limit = 1
// so the ops take turns on one physical array (the descriptor walker runs one op at a time) and
// the DSP count is MAC_LANES, not the sum over the call sites; the operand muxes in front of the
// array are the price. Each lane also adds a 48-bit addend c (the DSP48E2's post-adder: P = A B
// + C), so whoever accumulates does it inside the DSP: the matrix core's output-stationary
// tile (mc_accumulate, also pinned to one instance), the attention engines' channel sums and
// the attention backward's dq, dk and dv. Lanes that only multiply pass c = 0.
#ifndef TRILEVEL_MAC_ARRAY_H
#define TRILEVEL_MAC_ARRAY_H

#include "fixed.h"

#define MAC_LANES (CFG_MC_ROWS * CFG_MC_COLS)

/// p[l] = a[l] b[l] + c[l] for every lane: one DSP48E2 each (16x16 multiplier, 48-bit post-
/// adder), a one-cycle pipeline (II=1: all operands are completely partitioned, every lane
/// independent). Exact: every caller keeps |c| + 2^30 below 2^47.
inline void mac_products(const q16_t a[MAC_LANES], const q16_t b[MAC_LANES], const acc_t c[MAC_LANES],
                         acc_t p[MAC_LANES]) {
#pragma HLS INLINE off
#pragma HLS PIPELINE II = 1
#pragma HLS ARRAY_PARTITION variable = a complete
#pragma HLS ARRAY_PARTITION variable = b complete
#pragma HLS ARRAY_PARTITION variable = c complete
#pragma HLS ARRAY_PARTITION variable = p complete
MAC_LANE:
    for (int l = 0; l < MAC_LANES; l++) p[l] = c[l] + acc_t(a[l].to_int() * b[l].to_int());  // |a b| <= 2^30
}

/// One K step of the output-stationary matrix core: acc[i][j] = (first ? 0 : acc[i][j]) + a[i] b[j].
/// a: MC_ROWS operands (one per tile row), b: MC_COLS operands (one per tile column); lane
/// (i, j) of the multiplier array multiplies a[i] by b[j] (the outer product) and adds the
/// lane's accumulator (0 on the first step) in its post-adder. acc: the tile's 48-bit
/// accumulators, exact (every caller keeps |acc| < 2^41). II=1: the operands and acc are
/// completely partitioned (registers), every accumulator depends only on itself one step
/// earlier (one pass through the DSP). One instance (ALLOCATION limit 1 in the top): the LINEAR
/// tile and the backward's dX and dW tiles share the operand fan-out and accumulator muxes.
inline void mc_accumulate(const q16_t a[CFG_MC_ROWS], const q16_t b[CFG_MC_COLS], bool first,
                          acc_t acc[CFG_MC_ROWS][CFG_MC_COLS]) {
#pragma HLS INLINE off
#pragma HLS PIPELINE II = 1
#pragma HLS ARRAY_PARTITION variable = a complete
#pragma HLS ARRAY_PARTITION variable = b complete
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 0
    q16_t la[MAC_LANES], lb[MAC_LANES];
    acc_t lc[MAC_LANES], lp[MAC_LANES];
MC_OPERANDS:
    for (int i = 0; i < CFG_MC_ROWS; i++) {
        for (int j = 0; j < CFG_MC_COLS; j++) {
            la[i * CFG_MC_COLS + j] = a[i];
            lb[i * CFG_MC_COLS + j] = b[j];
            lc[i * CFG_MC_COLS + j] = first ? acc_t(0) : acc[i][j];
        }
    }
    mac_products(la, lb, lc, lp);
MC_ACCUMULATE:
    for (int i = 0; i < CFG_MC_ROWS; i++) {
        for (int j = 0; j < CFG_MC_COLS; j++) acc[i][j] = lp[i * CFG_MC_COLS + j];
    }
}

#endif
