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

/// Reads n int16 values from byte `base` (beat-aligned) into dst[0..n).
/// II=1 per beat: dst must be partitioned cyclic by CFG_I16_PER_WORD (or more) by the caller.
template <int MAXN>
void load_i16(const word_t* mem, ap_uint<32> base, int n, q16_t dst[MAXN]) {
    const int beats = (n + CFG_I16_PER_WORD - 1) / CFG_I16_PER_WORD;
    SIM_LOOP(CNT_MEM_READ, beats);
LOAD_I16_BEATS:
    for (int b = 0; b < beats; b++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAXN / 8
        word_t w = mem[(base / CFG_AXI_BYTES) + b];
        for (int j = 0; j < CFG_I16_PER_WORD; j++) {
            int i = b * CFG_I16_PER_WORD + j;
            if (i < n) dst[i] = q16_t(w.range(16 * j + 15, 16 * j));
        }
    }
}

/// Writes n int16 values to byte `base` (beat-aligned); lanes past n in the last beat are 0.
template <int MAXN>
void store_i16(word_t* mem, ap_uint<32> base, int n, const q16_t src[MAXN]) {
    const int beats = (n + CFG_I16_PER_WORD - 1) / CFG_I16_PER_WORD;
    SIM_LOOP(CNT_MEM_WRITE, beats);
STORE_I16_BEATS:
    for (int b = 0; b < beats; b++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAXN / 8
        word_t w = 0;
        for (int j = 0; j < CFG_I16_PER_WORD; j++) {
            int i = b * CFG_I16_PER_WORD + j;
            q16_t v = i < n ? src[i] : q16_t(0);
            w.range(16 * j + 15, 16 * j) = ap_uint<16>(v);
        }
        mem[(base / CFG_AXI_BYTES) + b] = w;
    }
}

/// Reads n int32 values (indices, knots, score maps) from byte `base` (beat-aligned).
template <int MAXN>
void load_i32(const word_t* mem, ap_uint<32> base, int n, i32_t dst[MAXN]) {
    const int beats = (n + CFG_I32_PER_WORD - 1) / CFG_I32_PER_WORD;
    SIM_LOOP(CNT_MEM_READ, beats);
LOAD_I32_BEATS:
    for (int b = 0; b < beats; b++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAXN / 4
        word_t w = mem[(base / CFG_AXI_BYTES) + b];
        for (int j = 0; j < CFG_I32_PER_WORD; j++) {
            int i = b * CFG_I32_PER_WORD + j;
            if (i < n) dst[i] = i32_t(w.range(32 * j + 31, 32 * j));
        }
    }
}

/// Writes n int32 values to byte `base` (beat-aligned); lanes past n are 0.
template <int MAXN>
void store_i32(word_t* mem, ap_uint<32> base, int n, const i32_t src[MAXN]) {
    const int beats = (n + CFG_I32_PER_WORD - 1) / CFG_I32_PER_WORD;
    SIM_LOOP(CNT_MEM_WRITE, beats);
STORE_I32_BEATS:
    for (int b = 0; b < beats; b++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAXN / 4
        word_t w = 0;
        for (int j = 0; j < CFG_I32_PER_WORD; j++) {
            int i = b * CFG_I32_PER_WORD + j;
            i32_t v = i < n ? src[i] : i32_t(0);
            w.range(32 * j + 31, 32 * j) = ap_uint<32>(v);
        }
        mem[(base / CFG_AXI_BYTES) + b] = w;
    }
}

#endif
