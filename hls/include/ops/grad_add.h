// OP_GRAD_ADD: the sum of two gradients of one tensor, at a residual fork (reference
// ops_backward.add_grads). The operands are aligned exactly to f = min(max(fa, fb),
// min(fa, fb) + 40) (the 40-bit cap keeps the aligned sum inside 64 bits), summed, and the
// sum gets its own dynamic format.
#ifndef TRILEVEL_OPS_GRAD_ADD_H
#define TRILEVEL_OPS_GRAD_ADD_H

#include "../buffers.h"
#include "../desc.h"
#include "../memory.h"
#include "grad_format.h"

/// OP_GRAD_ADD.
/// X:  a (M, N) int16, row stride XS, format from slot F0.
/// W:  b (M, N) int16, row stride WS, format from slot F1.
/// Y:  a + b (M, N) int16, row stride YS, dynamic format -> slot F2 (Y may be X or W: each
///     row is read whole before it is written).   AUX3: format table.
inline ap_uint<32> op_grad_add(word_t* mem, ap_uint<32> mem_bytes, const Desc& d, EngineBuffers& buf) {
    const int M = int(d.u(DW_M));
    const int N = int(d.u(DW_N));
    if (M < 1 || M > CFG_MAX_TOKENS || N < 1 || N > CFG_MAX_DIM) return ST_BAD_SIZE;
    if (!tensor_ok(d.u(DW_X), M, d.u(DW_XS), N, 2, mem_bytes) ||
        !tensor_ok(d.u(DW_W), M, d.u(DW_WS), N, 2, mem_bytes) ||
        !tensor_ok(d.u(DW_Y), M, d.u(DW_YS), N, 2, mem_bytes) || !fmt_table_ok(d, mem_bytes))
        return ST_BAD_ADDRESS;
    const int fa = fmt_read(mem, d, 0);
    const int fb = fmt_read(mem, d, 1);
    if (!frac_ok(fa) || !frac_ok(fb)) return ST_BAD_PARAM;
    const int lo = fa < fb ? fa : fb, hi = fa < fb ? fb : fa;
    const int fs = hi < lo + ABI_GRAD_MAX_ALIGN ? hi : lo + ABI_GRAD_MAX_ALIGN;
    const int sa = fa - fs, sb = fb - fs;  // in [-40, 56]: exact left shifts, or rounded right ones

    vrow_t &a = buf.vrow[0], &b = buf.vrow[1], &out = buf.vrow[2];  // the vector rows (buffers.h)
    const int groups = (N + CFG_VU_LANES - 1) / CFG_VU_LANES;
    wide_t mx = 0;
    int f = ABI_FRAC_MAX, shift = 0;
GA_PASS:
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            f = dynamic_frac(mx, fs);
            shift = requant_shift(fs, f);
        }
    GA_ROWS:
        for (int i = 0; i < M; i++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
            load_i16<CFG_MAX_DIM>(mem, d.u(DW_X) + ap_uint<32>(i) * d.u(DW_XS) * 2, N, a);
            load_i16<CFG_MAX_DIM>(mem, d.u(DW_W) + ap_uint<32>(i) * d.u(DW_WS) * 2, N, b);
            SIM_LOOP(pass == 0 ? CNT_GA_ELEMS_MAXP : CNT_GA_ELEMS, groups);
        GA_ELEMS:  // VU_LANES elements per cycle, independent lanes; the pass-0 maximum is a
                   // comparator tree and one carried compare-select: II=1
            for (int k0 = 0; k0 < N; k0 += CFG_VU_LANES) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_DIM / CFG_VU_LANES
                for (int l = 0; l < CFG_VU_LANES; l++) {
                    const int k = k0 + l;
                    if (k < N) {
                        const wide_t s = rshift_round(a[k], sa) + rshift_round(b[k], sb);
                        if (pass == 0)
                            mx = max_abs(mx, s);
                        else
                            out[k] = sat16(rshift_round(s, shift));
                    }
                }
            }
            if (pass == 1) store_i16<CFG_MAX_DIM>(mem, d.u(DW_Y) + ap_uint<32>(i) * d.u(DW_YS) * 2, N, out);
        }
    }
    fmt_write(mem, d, 2, f);
    return ST_DONE;
}

#endif
