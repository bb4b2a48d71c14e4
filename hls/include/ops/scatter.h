// OP_SCATTER: the backward of OP_GATHER (reference ops_backward.scatter_tokens). The gather
// kept the prefix rows and the patch rows at idx; its backward puts the kept rows' gradient
// back at those rows and writes 0 to the rows the TA-Selector dropped (no gradient flows
// through the ranking). Values are copied, so the gradient keeps its format (and its slot).
#ifndef TRILEVEL_OPS_SCATTER_H
#define TRILEVEL_OPS_SCATTER_H

#include "../desc.h"
#include "../memory.h"

/// OP_SCATTER.
/// X:    the kept rows' gradient (P1 prefix + N, K) int16, row stride XS.
/// AUX0: idx (N) int32, the gather's patch indices: strictly ascending, each < M (else
///       ST_BAD_INDEX before anything is written; the TA-Selector writes them so).
/// Y:    the gradient of all rows (prefix + M patches, K) int16, row stride YS.
inline ap_uint<32> op_scatter(word_t* mem, ap_uint<32> mem_bytes, const Desc& d) {
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

    q16_t row[CFG_MAX_DIM], zero[CFG_MAX_DIM];
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
