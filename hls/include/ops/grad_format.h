// Gradient formats chosen at run time (block floating point) and the format table.
//
// A gradient tensor's frac_bits come from its own accumulator: with m = max|acc| over the
// whole tensor, s = bitlength(m) - 15 (+1 when m rounds up past 32767), f = facc - s clamped
// to [ABI_FRAC_MIN, ABI_FRAC_MAX] (fixedpoint.dynamic_frac; m = 0 gives ABI_FRAC_MAX). The
// maximum must be known before the first output element is written, so every backward op
// with a dynamic output runs its loops twice: a max pass that writes nothing, then a write
// pass that recomputes the same accumulators and requantises them (hls/README.md, "Backward
// ops", says why recomputing beats a wide scratch tensor in DDR). Gradient vectors that fit
// on chip (db, dgamma, dbeta) are accumulated once and written after their maximum.
//
// Formats travel through the format table: ABI_FMT_SLOTS int32 slots in the arena at AUX3.
// A backward op reads the frac_bits of its gradient inputs from slots and writes its outputs'
// frac_bits to slots; DW_P3 names four 8-bit slots F0..F3 (bits 7:0 .. 31:24) whose roles
// each op's comment lists. Static formats (weights, activations) are descriptor fields.
#ifndef TRILEVEL_OPS_GRAD_FORMAT_H
#define TRILEVEL_OPS_GRAD_FORMAT_H

#include "../desc.h"
#include "../memory.h"

/// Slot F<i> (i in 0..3) of the descriptor: byte i of DW_P3.
inline int fmt_slot(const Desc& d, int i) { return int(d.u(DW_P3).range(8 * i + 7, 8 * i)); }

/// True when the whole format table (AUX3) lies in the arena, beat-aligned.
inline bool fmt_table_ok(const Desc& d, ap_uint<32> mem_bytes) {
    return tensor_ok(d.u(DW_AUX3), 1, ABI_FMT_SLOTS, ABI_FMT_SLOTS, 4, mem_bytes);
}

/// A format the backward ops accept (the reference's FRAC_MIN..FRAC_MAX).
inline bool frac_ok(int f) { return f >= ABI_FRAC_MIN && f <= ABI_FRAC_MAX; }

/// Reads slot F<i> of the table (one beat).
inline int fmt_read(const word_t* mem, const Desc& d, int i) {
    const int slot = fmt_slot(d, i);
    SIM_LOOP(CNT_MEM_READ, 1);
    word_t w = mem[d.u(DW_AUX3) / CFG_AXI_BYTES + slot / CFG_I32_PER_WORD];
    const int lane = slot % CFG_I32_PER_WORD;
    return int(ap_int<32>(w.range(32 * lane + 31, 32 * lane)));
}

/// Writes f to slot F<i> of the table (read-modify-write of its beat).
inline void fmt_write(word_t* mem, const Desc& d, int i, int f) {
    const int slot = fmt_slot(d, i);
    const ap_uint<32> beat = d.u(DW_AUX3) / CFG_AXI_BYTES + slot / CFG_I32_PER_WORD;
    const int lane = slot % CFG_I32_PER_WORD;
    SIM_LOOP(CNT_MEM_READ, 1);
    SIM_LOOP(CNT_MEM_WRITE, 1);
    word_t w = mem[beat];
    w.range(32 * lane + 31, 32 * lane) = ap_uint<32>(ap_int<32>(f));
    mem[beat] = w;
}

/// |a| (a > -2^63 everywhere here: accumulators are below 2^62).
inline wide_t abs_wide(wide_t a) {
#pragma HLS INLINE
    return a < 0 ? wide_t(-a) : a;
}

/// max(m, |a|): the running maximum a max pass carries (one compare-select per cycle).
inline wide_t max_abs(wide_t m, wide_t a) {
#pragma HLS INLINE
    wide_t b = abs_wide(a);
    return b > m ? b : m;
}

/// The format of a gradient whose accumulator at facc fractional bits has maximum |acc| = m.
inline int dynamic_frac(wide_t m, int facc) {
    if (m == 0) return ABI_FRAC_MAX;
    int s = leading_one(m) + 1 - 15;  // bitlength(m) - 15: m >> s is below 2^15 before rounding
    if (rshift_round(m, s) > 32767) s += 1;
    int f = facc - s;
    return f < ABI_FRAC_MIN ? ABI_FRAC_MIN : (f > ABI_FRAC_MAX ? ABI_FRAC_MAX : f);
}

/// The right shift from facc to the chosen format f. With m > 0 it lies in [-16, 49]; only
/// an all-zero tensor (f = FRAC_MAX) can ask for more, and its values are 0 whatever the
/// shift, so the clamp keeps the shifter within ABI_MAX_SHIFT without changing a result.
inline int requant_shift(int facc, int f) {
    int s = facc - f;
    return s < -ABI_MAX_SHIFT ? -ABI_MAX_SHIFT : s;
}

#endif
