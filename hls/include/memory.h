// The arena in DDR: 128-bit m_axi beats, tensors of int16 or int32 rows.
//
// Every tensor starts on a beat boundary and every row stride is a whole number of beats
// (the host pads rows), so a row is a burst of whole beats; lanes past a row's length are
// written as 0 and belong to the row's padding. Ops check every tensor they touch with
// tensor_ok() before the first access, so a bad descriptor stops without touching memory
// outside the arena.
#ifndef TRILEVEL_MEMORY_H
#define TRILEVEL_MEMORY_H

#include "counters.h"
#include "fixed.h"

typedef ap_int<32> i32_t;

/// True when rows x row_elems elements of elem_bytes, rows stride_elems apart, starting at
/// byte `base`, lie inside [0, mem_bytes) and start on beat boundaries.
inline bool tensor_ok(ap_uint<32> base, ap_uint<32> rows, ap_uint<32> stride_elems, ap_uint<32> row_elems,
                      int elem_bytes, ap_uint<32> mem_bytes) {
    if (rows == 0 || row_elems == 0) return false;
    if (base % CFG_AXI_BYTES != 0) return false;
    ap_uint<64> row_bytes = ap_uint<64>(row_elems) * elem_bytes;
    ap_uint<64> row_span = (row_bytes + CFG_AXI_BYTES - 1) / CFG_AXI_BYTES * CFG_AXI_BYTES;
    ap_uint<64> stride_bytes = ap_uint<64>(stride_elems) * elem_bytes;
    if (rows > 1 && (stride_bytes % CFG_AXI_BYTES != 0 || stride_elems < row_elems)) return false;
    ap_uint<64> end = ap_uint<64>(base) + ap_uint<64>(rows - 1) * stride_bytes + row_span;
    return end <= ap_uint<64>(mem_bytes);
}

/// Reads n values of W bits (T: q16_t or i32_t) from byte `base` (beat-aligned) into dst[0..n).
/// II=1 per beat: dst must be partitioned cyclic by the lanes of a beat (or more) by the caller.
template <int W, typename T, int MAXN>
void load_lanes(const word_t* mem, ap_uint<32> base, int n, T dst[MAXN]) {
    const int lanes = CFG_AXI_BITS / W;
    const int beats = (n + lanes - 1) / lanes;
    SIM_LOOP(CNT_MEM_READ, beats);
LOAD_BEATS:
    for (int b = 0; b < beats; b++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAXN * W / CFG_AXI_BITS
        word_t w = mem[(base / CFG_AXI_BYTES) + b];
        for (int j = 0; j < lanes; j++) {
            int i = b * lanes + j;
            if (i < n) dst[i] = T(w.range(W * j + W - 1, W * j));
        }
    }
}

/// Writes n values of W bits to byte `base` (beat-aligned); lanes past n in the last beat are 0.
template <int W, typename T, int MAXN>
void store_lanes(word_t* mem, ap_uint<32> base, int n, const T src[MAXN]) {
    const int lanes = CFG_AXI_BITS / W;
    const int beats = (n + lanes - 1) / lanes;
    SIM_LOOP(CNT_MEM_WRITE, beats);
STORE_BEATS:
    for (int b = 0; b < beats; b++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAXN * W / CFG_AXI_BITS
        word_t w = 0;
        for (int j = 0; j < lanes; j++) {
            int i = b * lanes + j;
            T v = i < n ? src[i] : T(0);
            w.range(W * j + W - 1, W * j) = ap_uint<W>(v);
        }
        mem[(base / CFG_AXI_BYTES) + b] = w;
    }
}

/// int16 tensors (activations, weights, gradients).
template <int MAXN>
void load_i16(const word_t* mem, ap_uint<32> base, int n, q16_t dst[MAXN]) {
    load_lanes<16, q16_t, MAXN>(mem, base, n, dst);
}
template <int MAXN>
void store_i16(word_t* mem, ap_uint<32> base, int n, const q16_t src[MAXN]) {
    store_lanes<16, q16_t, MAXN>(mem, base, n, src);
}

/// int32 tensors (indices, knots, score maps, master copies).
template <int MAXN>
void load_i32(const word_t* mem, ap_uint<32> base, int n, i32_t dst[MAXN]) {
    load_lanes<32, i32_t, MAXN>(mem, base, n, dst);
}
template <int MAXN>
void store_i32(word_t* mem, ap_uint<32> base, int n, const i32_t src[MAXN]) {
    store_lanes<32, i32_t, MAXN>(mem, base, n, src);
}

#endif
