// Number types and the rounding, saturation and table arithmetic of docs/fixed_point.md.
//
// Every function here is the C++ twin of one in host/trilevel_host/fixedpoint.py or
// luts.py; the numpy reference is the oracle and these must agree with it bit for bit.
#ifndef TRILEVEL_FIXED_H
#define TRILEVEL_FIXED_H

#include <ap_int.h>

#include "abi.h"
#include "config.h"

typedef ap_int<16> q16_t;                   // stored tensors: int16 at a per-tensor frac_bits
typedef ap_int<CFG_ACC_BITS> acc_t;         // dot-product accumulator (DSP48E2 cascade)
typedef ap_int<64> wide_t;                  // vector-unit intermediates (LayerNorm sums, ...)
typedef ap_uint<CFG_AXI_BITS> word_t;       // one m_axi beat
typedef ap_uint<32> addr_t;                 // byte offset into the arena


/// a * 2^-s rounded half up for s > 0 (arithmetic shift), exact a * 2^-s for s <= 0.
inline wide_t rshift_round(wide_t a, int s) {
#pragma HLS INLINE
    if (s <= 0) return a << (-s);
    if (s > ABI_MAX_SHIFT) return 0;  // |a| < 2^62 everywhere: rounds to 0 (host keeps s in range)
    return (a + (wide_t(1) << (s - 1))) >> s;
}

/// Clip to the signed 16-bit range (AP_SAT).
inline q16_t sat16(wide_t a) {
#pragma HLS INLINE
    if (a > 32767) return q16_t(32767);
    if (a < -32768) return q16_t(-32768);
    return q16_t(a);
}

/// Clip to the signed 48-bit accumulator range.
inline wide_t sat_acc(wide_t a) {
#pragma HLS INLINE
    const wide_t hi = (wide_t(1) << (CFG_ACC_BITS - 1)) - 1;
    if (a > hi) return hi;
    if (a < -hi - 1) return -hi - 1;
    return a;
}

/// requant(acc, from, to) = saturate(rshift_round(acc, from - to)): the op outputs' rounding.
inline q16_t requant(wide_t acc, int shift) {
#pragma HLS INLINE
    return sat16(rshift_round(acc, shift));
}

/// floor(num / den) for den > 0 (C++ '/' truncates toward zero).
inline wide_t floor_div(wide_t num, wide_t den) {
    wide_t q = num / den;
    if (num < 0 && q * den != num) q -= 1;
    return q;
}

/// a / n rounded half up: floor((2a + n) / 2n). One divider per row, outside the pipelines.
inline wide_t rdiv(wide_t a, wide_t n) { return floor_div(2 * a + n, 2 * n); }

// ---- piecewise-linear tables (host/trilevel_host/luts.py; knots loaded by OP_LOAD_LUT)
// The generating constants of each table, fixed by the arithmetic: the host refuses a
// package whose manifest says otherwise.
#define LUT_EXP_LO (-16)
#define LUT_EXP_HI 0
#define LUT_EXP_IN_FRAC 14
#define LUT_EXP_STEP_BITS 7
#define LUT_EXP_OUT_FRAC 24
#define LUT_EXP_KNOTS 2050
#define LUT_GELU_LO (-8)
#define LUT_GELU_HI 8
#define LUT_GELU_IN_FRAC 14
#define LUT_GELU_STEP_BITS 7
#define LUT_GELU_OUT_FRAC 16
#define LUT_GELU_KNOTS 2050
#define LUT_GELU_GRAD_LO (-8)
#define LUT_GELU_GRAD_HI 8
#define LUT_GELU_GRAD_IN_FRAC 14
#define LUT_GELU_GRAD_STEP_BITS 7
#define LUT_GELU_GRAD_OUT_FRAC 16
#define LUT_GELU_GRAD_KNOTS 2050
#define LUT_RECIP_LO 1
#define LUT_RECIP_HI 2
#define LUT_RECIP_IN_FRAC 20
#define LUT_RECIP_STEP_BITS 8
#define LUT_RECIP_OUT_FRAC 24
#define LUT_RECIP_KNOTS 258
#define LUT_RSQRT_LO 1
#define LUT_RSQRT_HI 4
#define LUT_RSQRT_IN_FRAC 20
#define LUT_RSQRT_STEP_BITS 8
#define LUT_RSQRT_OUT_FRAC 24
#define LUT_RSQRT_KNOTS 770
#define LUT_MAX_KNOTS 2050

typedef ap_int<32> knot_t;

/// The tables on chip, filled by OP_LOAD_LUT. One instance for the whole engine.
struct Luts {
    knot_t exp_t[LUT_EXP_KNOTS];
    knot_t gelu[LUT_GELU_KNOTS];
    knot_t gelu_grad[LUT_GELU_GRAD_KNOTS];
    knot_t recip[LUT_RECIP_KNOTS];
    knot_t rsqrt[LUT_RSQRT_KNOTS];
};

/// Table lookup with linear interpolation; x at in_frac, clamped to [lo, hi] here.
template <int LO, int HI, int IN_FRAC, int STEP_BITS>
inline wide_t pwl_eval(const knot_t* t, wide_t x) {
#pragma HLS INLINE
    const wide_t lo_i = wide_t(LO) << IN_FRAC;
    const wide_t hi_i = wide_t(HI) << IN_FRAC;
    wide_t xc = x < lo_i ? lo_i : (x > hi_i ? hi_i : x);
    wide_t u = xc - lo_i;
    const int s = IN_FRAC - STEP_BITS;
    ap_uint<32> i = ap_uint<32>(u >> s);
    wide_t r = u & ((wide_t(1) << s) - 1);
    wide_t t0 = t[i];
    wide_t t1 = t[i + 1];  // the table has one knot beyond hi, so i + 1 is in range
    return t0 + rshift_round((t1 - t0) * r, s);
}

inline wide_t lut_exp(const Luts& L, wide_t x) {
    return pwl_eval<LUT_EXP_LO, LUT_EXP_HI, LUT_EXP_IN_FRAC, LUT_EXP_STEP_BITS>(L.exp_t, x);
}
inline wide_t lut_gelu(const Luts& L, wide_t x) {
    return pwl_eval<LUT_GELU_LO, LUT_GELU_HI, LUT_GELU_IN_FRAC, LUT_GELU_STEP_BITS>(L.gelu, x);
}

/// floor(log2 v) for v > 0 (the leading one's position).
inline int leading_one(wide_t v) {
#pragma HLS INLINE
    ap_uint<64> u = ap_uint<64>(v);
    return 63 - u.countLeadingZeros();
}

/// Mantissa with MF fractional bits (truncating), m in [2^MF, 2^(MF+1)), and e = floor(log2 v).
template <int MF>
inline wide_t mantissa(wide_t v, int& e) {
#pragma HLS INLINE
    e = leading_one(v);
    return e >= MF ? wide_t(v >> (e - MF)) : wide_t(v << (MF - e));
}

/// 1/v ~= y 2^-sh for v > 0 (luts.recip).
inline wide_t recip(const Luts& L, wide_t v, int& sh) {
    int e;
    wide_t m = mantissa<LUT_RECIP_IN_FRAC>(v, e);
    sh = e + LUT_RECIP_OUT_FRAC;
    return pwl_eval<LUT_RECIP_LO, LUT_RECIP_HI, LUT_RECIP_IN_FRAC, LUT_RECIP_STEP_BITS>(L.recip, m);
}

/// 1/sqrt(v) ~= y 2^-sh for v > 0 (luts.rsqrt): the exponent is made even first.
inline wide_t rsqrt(const Luts& L, wide_t v, int& sh) {
    int e;
    wide_t m = mantissa<LUT_RSQRT_IN_FRAC>(v, e);
    if (e & 1) {
        m = m << 1;
        e -= 1;
    }
    sh = e / 2 + LUT_RSQRT_OUT_FRAC;
    return pwl_eval<LUT_RSQRT_LO, LUT_RSQRT_HI, LUT_RSQRT_IN_FRAC, LUT_RSQRT_STEP_BITS>(L.rsqrt, m);
}

#endif
