// OP_SGD: the weight update (reference model.sgd_update): plain SGD on an int32 master copy.
//
// The master copy of a weight at fw holds fw + 16 fractional bits; the learning rate is
// lr_q = round(lr 2^24). Per element:
//   master = sat32(master - rshift_round(g lr_q, fg + 24 - (fw + 16)));  w = sat16(rshift_round(master, 16))
// The forward reads w; the master copy lets updates far below w's LSB accumulate. A
// combination of lr and formats whose shift is beyond ABI_MAX_SHIFT, or whose product
// g lr_q (after a left shift) could leave 63 bits, is refused before anything is written.
#ifndef TRILEVEL_OPS_SGD_H
#define TRILEVEL_OPS_SGD_H

#include "../buffers.h"
#include "../desc.h"
#include "../memory.h"
#include "grad_format.h"

/// OP_SGD.
/// X:    g (M, N) int16, row stride XS, format from slot F0 (the gradient op's output slot).
/// AUX0: master (M, N) int32, row stride AS, at fw + 16 (read and written).
/// Y:    w (M, N) int16, row stride YS, at SH0 = fw (written).
/// E0/E1: lr_q, signed 64-bit, at 24 fractional bits.   AUX3: format table.
/// M <= CFG_MAX_OUT rows (a weight's output features, or the tokens of pos_embed),
/// N <= CFG_MAX_K columns.
inline ap_uint<32> op_sgd(word_t* mem, ap_uint<32> mem_bytes, const Desc& d, EngineBuffers& buf) {
    const int M = int(d.u(DW_M));
    const int N = int(d.u(DW_N));
    const int fw = d.s(DW_SH0);
    const wide_t lr = d.e64();
    if (M < 1 || M > CFG_MAX_OUT || N < 1 || N > CFG_MAX_K) return ST_BAD_SIZE;
    if (!frac_ok(fw)) return ST_BAD_PARAM;
    if (!tensor_ok(d.u(DW_X), M, d.u(DW_XS), N, 2, mem_bytes) ||
        !tensor_ok(d.u(DW_AUX0), M, d.u(DW_AS), N, 4, mem_bytes) ||
        !tensor_ok(d.u(DW_Y), M, d.u(DW_YS), N, 2, mem_bytes) || !fmt_table_ok(d, mem_bytes))
        return ST_BAD_ADDRESS;
    const int fg = fmt_read(mem, d, 0);
    if (!frac_ok(fg)) return ST_BAD_PARAM;
    const int s = fg + ABI_LR_FRAC - (fw + ABI_MASTER_EXTRA_FRAC);
    if (s > ABI_MAX_SHIFT || s < -ABI_MAX_SHIFT) return ST_BAD_PARAM;
    // |g| <= 2^15, so |g lr_q| 2^max(0, -s) < 2^(15 + bitlength(|lr_q|) + max(0, -s)), kept <= 2^62
    const wide_t lim = wide_t(1) << 62;
    if (lr <= -lim || lr >= lim) return ST_BAD_PARAM;
    const wide_t alr = abs_wide(lr);
    const int lr_bits = alr == 0 ? 0 : leading_one(alr) + 1;
    if (alr != 0 && lr_bits + 15 + (s < 0 ? -s : 0) > 62) return ST_BAD_PARAM;

    vrow_t &g = buf.vrow[0], &w = buf.vrow[1];  // the vector rows (buffers.h)
    vrow32_t& master = buf.vrow32[0];
    const wide_t m_hi = (wide_t(1) << 31) - 1, m_lo = -(wide_t(1) << 31);
    const int groups = (N + CFG_VU_LANES - 1) / CFG_VU_LANES;
SGD_ROWS:
    for (int i = 0; i < M; i++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_OUT
        load_i16<CFG_MAX_K>(mem, d.u(DW_X) + ap_uint<32>(i) * d.u(DW_XS) * 2, N, g);
        load_i32<CFG_MAX_K>(mem, d.u(DW_AUX0) + ap_uint<32>(i) * d.u(DW_AS) * 4, N, master);
        SIM_LOOP(CNT_SGD_ELEMS, groups);
    SGD_ELEMS:  // VU_LANES elements per cycle, independent lanes (one 16x64-bit product each): II=1
        for (int k0 = 0; k0 < N; k0 += CFG_VU_LANES) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_K / CFG_VU_LANES
            for (int l = 0; l < CFG_VU_LANES; l++) {
                const int k = k0 + l;
                if (k < N) {
                    wide_t m = wide_t(master[k]) - rshift_round(wide_t(g[k]) * lr, s);
                    m = m > m_hi ? m_hi : (m < m_lo ? m_lo : m);
                    master[k] = i32_t(m);
                    w[k] = sat16(rshift_round(m, ABI_MASTER_EXTRA_FRAC));
                }
            }
        }
        store_i32<CFG_MAX_K>(mem, d.u(DW_AUX0) + ap_uint<32>(i) * d.u(DW_AS) * 4, N, master);
        store_i16<CFG_MAX_K>(mem, d.u(DW_Y) + ap_uint<32>(i) * d.u(DW_YS) * 2, N, w);
    }
    return ST_DONE;
}

#endif
