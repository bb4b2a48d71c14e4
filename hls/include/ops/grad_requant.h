// OP_GRAD_REQUANT: a gradient re-expressed in its own dynamic format (reference
// ops_backward.requant_dynamic on a 16-bit tensor). The embedding gradients are this:
// d pos_embed = dh (all tokens), d cls_token = dh's prefix row, each summed over a batch of
// one sample, so only the format changes (values that fit are shifted left, exactly).
#ifndef TRILEVEL_OPS_GRAD_REQUANT_H
#define TRILEVEL_OPS_GRAD_REQUANT_H

#include "../buffers.h"
#include "../desc.h"
#include "../memory.h"
#include "grad_format.h"

/// OP_GRAD_REQUANT.
/// X:  g (M, N) int16, row stride XS, format from slot F0.
/// Y:  g (M, N) int16, row stride YS, dynamic format -> slot F1 (Y may be X).
/// AUX3: format table.
inline ap_uint<32> op_grad_requant(word_t* mem, ap_uint<32> mem_bytes, const Desc& d, EngineBuffers& buf) {
    const int M = int(d.u(DW_M));
    const int N = int(d.u(DW_N));
    if (M < 1 || M > CFG_MAX_TOKENS || N < 1 || N > CFG_MAX_DIM) return ST_BAD_SIZE;
    if (!tensor_ok(d.u(DW_X), M, d.u(DW_XS), N, 2, mem_bytes) ||
        !tensor_ok(d.u(DW_Y), M, d.u(DW_YS), N, 2, mem_bytes) || !fmt_table_ok(d, mem_bytes))
        return ST_BAD_ADDRESS;
    const int fin = fmt_read(mem, d, 0);
    if (!frac_ok(fin)) return ST_BAD_PARAM;

    vrow_t &x = buf.vrow[0], &out = buf.vrow[1];  // the vector rows (buffers.h)
    const int groups = (N + CFG_VU_LANES - 1) / CFG_VU_LANES;
    wide_t mx = 0;
    int f = ABI_FRAC_MAX, shift = 0;
GR_PASS:
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            f = dynamic_frac(mx, fin);
            shift = requant_shift(fin, f);
        }
    GR_ROWS:
        for (int i = 0; i < M; i++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
            load_i16<CFG_MAX_DIM>(mem, d.u(DW_X) + ap_uint<32>(i) * d.u(DW_XS) * 2, N, x);
            SIM_LOOP(pass == 0 ? CNT_GR_ELEMS_MAXP : CNT_GR_ELEMS, groups);
        GR_ELEMS:  // VU_LANES elements per cycle, independent lanes; the pass-0 maximum is a
                   // comparator tree and one carried compare-select: II=1
            for (int k0 = 0; k0 < N; k0 += CFG_VU_LANES) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_DIM / CFG_VU_LANES
                for (int l = 0; l < CFG_VU_LANES; l++) {
                    const int k = k0 + l;
                    if (k < N) {
                        if (pass == 0)
                            mx = max_abs(mx, x[k]);
                        else
                            out[k] = sat16(rshift_round(x[k], shift));
                    }
                }
            }
            if (pass == 1) store_i16<CFG_MAX_DIM>(mem, d.u(DW_Y) + ap_uint<32>(i) * d.u(DW_YS) * 2, N, out);
        }
    }
    fmt_write(mem, d, 1, f);
    return ST_DONE;
}

#endif
