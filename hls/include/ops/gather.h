// OP_GATHER: the TA-Selector's token gather, Y = X[:prefix] ++ X[prefix + idx] (rows of K int16).
//
// Semantics: hls/README.md (op table); oracle reference/ops_forward.py gather_tokens. The index
// list is checked before any row is written. Rows are copied beat by beat from X to Y; lanes
// past K in a row's last beat are written as 0 (the arena's padding rule). Y may be X itself
// (an in-place gather) when idx is strictly ascending, as OP_SELECT writes it: output row r
// then reads input row >= r, which nothing has overwritten yet.
//
// Its backward, OP_SCATTER, follows below.
#ifndef TRILEVEL_OPS_GATHER_H
#define TRILEVEL_OPS_GATHER_H

#include "../buffers.h"
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

// ---------------------------------------------------------------- backward

// OP_SCATTER: the backward of OP_GATHER (reference ops_backward.scatter_tokens). The gather
// kept the prefix rows and the patch rows at idx; its backward puts the kept rows' gradient
// back at those rows and writes 0 to the rows the TA-Selector dropped (no gradient flows
// through the ranking). Values are copied, so the gradient keeps its format (and its slot).

/// OP_SCATTER.
/// X:    the kept rows' gradient (P1 prefix + N, K) int16, row stride XS.
/// AUX0: idx (N) int32, the gather's patch indices: strictly ascending, each < M (else
///       ST_BAD_INDEX before anything is written; the TA-Selector writes them so).
/// Y:    the gradient of all rows (prefix + M patches, K) int16, row stride YS.
inline ap_uint<32> op_scatter(word_t* mem, ap_uint<32> mem_bytes, const Desc& d, EngineBuffers& buf) {
    const int M = int(d.u(DW_M));
    const int N = int(d.u(DW_N));
    const int K = int(d.u(DW_K));
    const int pre = int(d.u(DW_P1));
    if (pre < 0 || pre > CFG_MAX_PREFIX || M < 1 || M + pre > CFG_MAX_TOKENS || N < 1 || N > M || K < 1 ||
        K > CFG_MAX_DIM)
        return ST_BAD_SIZE;
    if (!tensor_ok(d.u(DW_X), pre + N, d.u(DW_XS), K, 2, mem_bytes) ||
        !tensor_ok(d.u(DW_Y), pre + M, d.u(DW_YS), K, 2, mem_bytes) || !tensor_ok(d.u(DW_AUX0), 1, N, N, 4, mem_bytes))
        return ST_BAD_ADDRESS;

    i32_t idx[CFG_MAX_TOKENS];
    load_i32<CFG_MAX_TOKENS>(mem, d.u(DW_AUX0), N, idx);
    bool bad = false;
    SIM_LOOP(CNT_SC_CHECK, N);
SC_CHECK:  // one index per cycle against its predecessor: II=1 (the flag is an OR)
    for (int j = 0; j < N; j++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
        if (idx[j] < 0 || idx[j] >= M || (j > 0 && idx[j] <= idx[j - 1])) bad = true;
    }
    if (bad) return ST_BAD_INDEX;

    vrow_t &row = buf.vrow[0], &zero = buf.vrow[1];  // the vector rows (buffers.h)
    for (int k = 0; k < CFG_MAX_DIM; k++) zero[k] = 0;
    int next = 0;  // the next kept row, walked in step with the ascending indices
    SIM_LOOP(CNT_SC_ROWS, pre + M);
SC_ROWS:  // one output row per iteration: a load burst of the kept row (or none) and a
          // store burst of K/8 beats (MEM_READ / MEM_WRITE)
    for (int r = 0; r < pre + M; r++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
        int src = -1;
        if (r < pre) {
            src = r;
        } else if (next < N && int(idx[next]) == r - pre) {
            src = pre + next;
            next++;
        }
        const ap_uint<32> dst = d.u(DW_Y) + ap_uint<32>(r) * d.u(DW_YS) * 2;
        if (src >= 0) {
            load_i16<CFG_MAX_DIM>(mem, d.u(DW_X) + ap_uint<32>(src) * d.u(DW_XS) * 2, K, row);
            store_i16<CFG_MAX_DIM>(mem, dst, K, row);
        } else {
            store_i16<CFG_MAX_DIM>(mem, dst, K, zero);
        }
    }
    return ST_DONE;
}

#endif
