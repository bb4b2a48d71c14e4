// OP_CE_GRAD: the gradient of the cross-entropy loss with respect to the logits.
//
// d(sum of CE)/d logits = softmax(logits) - onehot(label) (reference ops_backward.
// cross_entropy_grad): the softmax of the forward's attention (exp and recip tables, the
// probabilities rounded once to f = 15), minus 2^15 at the label, saturated. The result has
// the fixed format ABI_PROB_FRAC, which the op writes to its slot so that the backward ops
// after it read every gradient format the same way.
#ifndef TRILEVEL_OPS_LOSS_H
#define TRILEVEL_OPS_LOSS_H

#include "../buffers.h"
#include "../desc.h"
#include "../memory.h"
#include "grad_format.h"

/// OP_CE_GRAD.
/// X:    logits (M samples, N classes) int16, row stride XS, at SH0 = flogits.
/// AUX0: labels (M) int32, each in [0, N) (else ST_BAD_INDEX, nothing written).
/// Y:    dlogits (M, N) int16, row stride YS, at f = 15; slot F0 of the table AUX3 gets 15.
inline ap_uint<32> op_ce_grad(word_t* mem, ap_uint<32> mem_bytes, const Desc& d, const Luts& L, EngineBuffers& buf) {
    const int M = int(d.u(DW_M));
    const int N = int(d.u(DW_N));
    const int flog = d.s(DW_SH0);
    if (M < 1 || M > CFG_MAX_TOKENS || N < 1 || N > CFG_MAX_OUT) return ST_BAD_SIZE;
    if (!frac_ok(flog)) return ST_BAD_PARAM;
    if (!tensor_ok(d.u(DW_X), M, d.u(DW_XS), N, 2, mem_bytes) ||
        !tensor_ok(d.u(DW_Y), M, d.u(DW_YS), N, 2, mem_bytes) || !tensor_ok(d.u(DW_AUX0), 1, M, M, 4, mem_bytes) ||
        !fmt_table_ok(d, mem_bytes))
        return ST_BAD_ADDRESS;

    i32_t label[CFG_MAX_TOKENS];
    load_i32<CFG_MAX_TOKENS>(mem, d.u(DW_AUX0), M, label);
    bool bad = false;
    SIM_LOOP(CNT_CE_LABELS, M);
CE_LABELS:  // one label compared per cycle: II=1 (the flag is an OR, no real dependence)
    for (int i = 0; i < M; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
        if (label[i] < 0 || label[i] >= N) bad = true;
    }
    if (bad) return ST_BAD_INDEX;

    const int kScoreFrac = 27;  // the softmax's wide probabilities (reference SCORE_FRAC)
    // logits -> exp input: z = rshift_round(s - max, flogits - 14), clamped by the table
    const int sh_z = flog - LUT_EXP_IN_FRAC;
    vrow_t &s = buf.vrow[0], &g = buf.vrow[1];  // the vector rows (buffers.h)
    vrow32_t& e = buf.vrow32[0];                // e <= 2^24 (the exp table at z = 0)
CE_ROWS:
    for (int i = 0; i < M; i++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
        load_i16<CFG_MAX_OUT>(mem, d.u(DW_X) + ap_uint<32>(i) * d.u(DW_XS) * 2, N, s);
        q16_t mx = s[0];
        SIM_LOOP(CNT_CE_MAX, N);
    CE_MAX:  // one logit per cycle; the running max is a single compare-select: II=1
        for (int j = 0; j < N; j++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_OUT
            if (s[j] > mx) mx = s[j];
        }
        wide_t total = 0;
        SIM_LOOP(CNT_CE_EXP, N);
    CE_EXP:  // one table lookup per cycle (the exp table is a ROM, one read port per lookup);
             // the 64-bit running sum is one adder: II=1
        for (int j = 0; j < N; j++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_OUT
            wide_t z = rshift_round(wide_t(s[j]) - wide_t(mx), sh_z);
            e[j] = i32_t(lut_exp(L, z));
            total += e[j];
        }
        int sh;
        wide_t r = recip(L, total, sh);  // total >= 2^24 (the maximum contributes exp(0))
        SIM_LOOP(CNT_CE_OUT, N);
    CE_OUT:  // p = e r at f = 27, then f = 15; minus 2^15 at the label: independent lanes, II=1
        for (int j = 0; j < N; j++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_OUT
            wide_t pw = rshift_round(wide_t(e[j]) * r, sh - kScoreFrac);
            wide_t p = sat16(rshift_round(pw, kScoreFrac - ABI_PROB_FRAC));
            g[j] = sat16(p - (j == int(label[i]) ? wide_t(1) << ABI_PROB_FRAC : wide_t(0)));
        }
        store_i16<CFG_MAX_OUT>(mem, d.u(DW_Y) + ap_uint<32>(i) * d.u(DW_YS) * 2, N, g);
    }
    fmt_write(mem, d, 0, ABI_PROB_FRAC);
    return ST_DONE;
}

#endif
