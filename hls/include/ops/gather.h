// OP_GATHER: the TA-Selector's token gather, Y = X[:prefix] ++ X[prefix + idx] (rows of K int16).
//
// Semantics: hls/README.md (op table); oracle reference/ops_forward.py gather_tokens. The index
// list is checked before any row is written. Rows are copied beat by beat from X to Y; lanes
// past K in a row's last beat are written as 0 (the arena's padding rule). Y may be X itself
// (an in-place gather) when idx is strictly ascending, as OP_SELECT writes it: output row r
// then reads input row >= r, which nothing has overwritten yet.
#ifndef TRILEVEL_OPS_GATHER_H
#define TRILEVEL_OPS_GATHER_H

#include "../desc.h"
#include "../memory.h"

/// OP_GATHER (hls/README.md). Fields:
///   X     int16 (P1 + M, K), stride XS: prefix rows, then M patch rows (any format)
///   AUX0  int32 idx (N), each < M
///   Y     int16 (P1 + N, K), stride YS: the prefix rows, then patch rows idx[0..N)
inline ap_uint<32> op_gather(word_t* mem, ap_uint<32> mem_bytes, const Desc& d) {
    const ap_uint<32> m_u = d.u(DW_M), n_u = d.u(DW_N), k_u = d.u(DW_K), pre_u = d.u(DW_P1);
    if (m_u == 0 || n_u == 0 || k_u == 0 || pre_u > CFG_MAX_PREFIX || m_u > CFG_MAX_TOKENS - pre_u ||
        n_u > CFG_MAX_TOKENS - pre_u || k_u > CFG_MAX_K)
        return ST_BAD_SIZE;
    const int M = m_u, N = n_u, K = k_u, prefix = pre_u;
    if (!tensor_ok(d.u(DW_X), prefix + M, d.u(DW_XS), K, 2, mem_bytes) ||
        !tensor_ok(d.u(DW_AUX0), 1, N, N, 4, mem_bytes) ||
        !tensor_ok(d.u(DW_Y), prefix + N, d.u(DW_YS), K, 2, mem_bytes))
        return ST_BAD_ADDRESS;

    i32_t idx[CFG_MAX_TOKENS];
#pragma HLS ARRAY_PARTITION variable = idx cyclic factor = CFG_I32_PER_WORD
    load_i32<CFG_MAX_TOKENS>(mem, d.u(DW_AUX0), N, idx);
    bool ok = true;
    SIM_LOOP(CNT_GATHER_CHECK, N);
    // One index per cycle. II=1: one read of idx; `ok` is a one-gate recurrence.
GATHER_CHECK:
    for (int a = 0; a < N; a++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
        ok = ok && idx[a] >= 0 && idx[a] < M;
    }
    if (!ok) return ST_BAD_INDEX;

    const int beats = (K + CFG_I16_PER_WORD - 1) / CFG_I16_PER_WORD;
    const int rows = prefix + N;
    SIM_LOOP(CNT_GATHER_COPY, rows * beats);
    // One beat per cycle, row-major over the output. II=1: the read and write channels of the
    // m_axi port are independent, and no beat reads what an earlier iteration wrote (the
    // DEPENDENCE pragma says so; in place, the output row never passes the input row).
    int r = 0, b = 0;
GATHER_COPY:
    for (int it = 0; it < rows * beats; it++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS * CFG_MAX_K / CFG_I16_PER_WORD
#pragma HLS DEPENDENCE variable = mem type = inter false
        const ap_uint<32> src = r < prefix ? ap_uint<32>(r) : ap_uint<32>(prefix + idx[r - prefix]);
        word_t w = mem[(d.u(DW_X) + src * d.u(DW_XS) * 2) / CFG_AXI_BYTES + b];
    GATHER_PAD:
        for (int j = 0; j < CFG_I16_PER_WORD; j++)
            if (b * CFG_I16_PER_WORD + j >= K) w.range(16 * j + 15, 16 * j) = 0;
        mem[(d.u(DW_Y) + ap_uint<32>(r) * d.u(DW_YS) * 2) / CFG_AXI_BYTES + b] = w;
        if (b == beats - 1) {
            b = 0;
            r++;
        } else {
            b++;
        }
    }
    return ST_DONE;
}

#endif
