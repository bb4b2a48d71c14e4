// The engine's one array of multipliers: every matmul multiplies through mac_products().
//
// The matrix core (LINEAR, and the backward's dX = dY W and dW = dY^T X) and the attention row
// engines (forward q k^T and p v; backward dO v^T, p^T dO, dS k and dS^T q) map their operands
// onto the same MAC_LANES 16x16-bit multipliers, one DSP48E2 each. The top function pins this to
// one instance:
//   #pragma HLS ALLOCATION function instances = mac_products limit = 1
// so the ops take turns on one physical array (the descriptor walker runs one op at a time) and
// the DSP count is MAC_LANES, not the sum over the call sites; the operand muxes in front of the
// array are the price. The matrix core's output-stationary accumulation (one 48-bit adder per
// lane) is shared the same way: every matrix-core op calls mc_accumulate, also pinned to one
// instance; the attention engines sum lanes per head and per channel beside the array.
#ifndef TRILEVEL_MAC_ARRAY_H
#define TRILEVEL_MAC_ARRAY_H

#include "fixed.h"

#define MAC_LANES (CFG_MC_ROWS * CFG_MC_COLS)

typedef ap_int<32> prod_t;  // exact 16x16-bit product

/// p[l] = a[l] * b[l] for every lane: one multiply per DSP48E2, a one-cycle pipeline (II=1:
/// all operands are completely partitioned, every lane independent).
inline void mac_products(const q16_t a[MAC_LANES], const q16_t b[MAC_LANES], prod_t p[MAC_LANES]) {
#pragma HLS INLINE off
#pragma HLS PIPELINE II = 1
#pragma HLS ARRAY_PARTITION variable = a complete
#pragma HLS ARRAY_PARTITION variable = b complete
#pragma HLS ARRAY_PARTITION variable = p complete
MAC_LANE:
    for (int l = 0; l < MAC_LANES; l++) p[l] = prod_t(a[l].to_int() * b[l].to_int());  // exact: |a b| <= 2^30
}

/// One K step of the output-stationary matrix core: acc[i][j] = (first ? 0 : acc[i][j]) + a[i] b[j].
/// a: MC_ROWS operands (one per tile row), b: MC_COLS operands (one per tile column); lane
/// (i, j) of the multiplier array multiplies a[i] by b[j] (the outer product). acc: the tile's
/// 48-bit accumulators, exact (every caller keeps |acc| < 2^41). II=1: the operands and acc are
/// completely partitioned (registers), every accumulator depends only on itself one step
/// earlier (one 48-bit add). One instance (ALLOCATION limit 1 in the top): the LINEAR tile, the
/// backward's dX and dW tiles share these adders as they share the multipliers.
inline void mc_accumulate(const q16_t a[CFG_MC_ROWS], const q16_t b[CFG_MC_COLS], bool first,
                          acc_t acc[CFG_MC_ROWS][CFG_MC_COLS]) {
#pragma HLS INLINE off
#pragma HLS PIPELINE II = 1
#pragma HLS ARRAY_PARTITION variable = a complete
#pragma HLS ARRAY_PARTITION variable = b complete
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 0
    q16_t la[MAC_LANES], lb[MAC_LANES];
    prod_t prod[MAC_LANES];
MC_OPERANDS:
    for (int i = 0; i < CFG_MC_ROWS; i++) {
        for (int j = 0; j < CFG_MC_COLS; j++) {
            la[i * CFG_MC_COLS + j] = a[i];
            lb[i * CFG_MC_COLS + j] = b[j];
        }
    }
    mac_products(la, lb, prod);
MC_ACCUMULATE:
    for (int i = 0; i < CFG_MC_ROWS; i++) {
        for (int j = 0; j < CFG_MC_COLS; j++) {
            const acc_t prev = first ? acc_t(0) : acc[i][j];
            acc[i][j] = prev + prod[i * CFG_MC_COLS + j];
        }
    }
}

#endif
