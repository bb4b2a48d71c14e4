// The engine's one array of multipliers: every matmul multiplies through mac_products().
//
// The matrix core (LINEAR, and the backward's dX = dY W and dW = dY^T X) and the attention row
// engine (q k^T and p v) map their operands onto the same MAC_LANES 16x16-bit multipliers, one
// DSP48E2 each. The top function pins this to one instance:
//   #pragma HLS ALLOCATION function instances = mac_products limit = 1
// so the ops take turns on one physical array (the descriptor walker runs one op at a time) and
// the DSP count is MAC_LANES, not the sum over the call sites. Each op keeps its own accumulation
// (registers and adders beside the array): an output-stationary tile accumulates per lane, the
// attention engine sums lanes per head; the operand muxes in front of the array are the price.
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

#endif
