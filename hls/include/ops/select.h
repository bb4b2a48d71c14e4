// OP_SELECT: the TA-Selector on chip. Token level: keep the n_keep patch tokens with the largest
// [CLS] scores; attention level: per kept row, keep the n_conn kept keys with the largest scores.
//
// Semantics: hls/README.md (op table) and docs/fixed_point.md "TA-Selector"; the oracle is
// reference/ops_forward.py (select_tokens, select_connections, topk_ascending) and the origin
// composition of reference/model.py (origin = previous origin[idx]).
//
// Top-k by rank counting: rank_j = #{i : s_i > s_j or (s_i == s_j and i < j)} is j's place
// in a stable descending sort, so "keep j iff rank_j < k" is exactly the top k with ties to
// the lower index, and scanning j upwards emits the kept indices in ascending order.
// CFG_SEL_LANES comparisons per cycle.
#ifndef TRILEVEL_OPS_SELECT_H
#define TRILEVEL_OPS_SELECT_H

#include "../desc.h"
#include "../memory.h"

/// The scores of one map row: scores[b] = row[prefix + b] (token level, `all`) or
/// row[prefix + idx[b]] (connection level: the kept columns), b < n.
inline void sel_scores(const i32_t row[CFG_MAX_TOKENS], int prefix, bool all, const i32_t idx[CFG_MAX_TOKENS], int n,
                       i32_t scores[CFG_MAX_TOKENS]) {
    SIM_LOOP(CNT_SEL_GATHER, n);
    // One column per cycle. II=1: one read of idx, one random read of row, one write of scores.
SEL_GATHER:
    for (int b = 0; b < n; b++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
        scores[b] = row[prefix + (all ? i32_t(b) : idx[b])];
    }
}

/// The k largest of scores[0 .. n) (ties to the lower index) as ascending indices in out[0..k).
/// scores must be cyclic-partitioned by CFG_SEL_LANES by the caller.
inline void sel_topk(const i32_t scores[CFG_MAX_TOKENS], int n, int k, i32_t out[CFG_MAX_TOKENS]) {
    bool kept[CFG_MAX_TOKENS];
    const int steps = (n + CFG_SEL_LANES - 1) / CFG_SEL_LANES;
    SIM_LOOP(CNT_SEL_RANK, n * steps);
    // One iteration compares candidate j with CFG_SEL_LANES others i (j-major, flattened).
    // II=1: scores is cyclic by CFG_SEL_LANES, so lane u always reads bank u (one port);
    // s_j is read through the other port on a candidate's first step.
    // The recurrence rank += (count of this step) is one small add.
    int j = 0, step = 0, rank = 0;
    i32_t sj = 0;
SEL_RANK:
    for (int it = 0; it < n * steps; it++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS * ((CFG_MAX_TOKENS + CFG_SEL_LANES - 1) / CFG_SEL_LANES)
        if (step == 0) {
            sj = scores[j];
            rank = 0;
        }
        int count = 0;
    SEL_RANK_LANE:
        for (int u = 0; u < CFG_SEL_LANES; u++) {
            const int i = step * CFG_SEL_LANES + u;
            if (i < n) {
                const i32_t si = scores[i];
                if (si > sj || (si == sj && i < j)) count++;
            }
        }
        rank += count;
        if (step == steps - 1) {
            kept[j] = rank < k;
            step = 0;
            j++;
        } else {
            step++;
        }
    }
    SIM_LOOP(CNT_SEL_EMIT, n);
    // One candidate per cycle, kept ones appended. II=1: the recurrence w += kept is one add.
    int w = 0;
SEL_EMIT:
    for (int c = 0; c < n; c++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
        if (kept[c]) out[w++] = c;
    }
}

/// OP_SELECT (hls/README.md). Fields:
///   X     int32 map (M, M), row stride XS: head-summed wide probabilities (OP_ATTENTION MAP)
///   P1    prefix tokens (>= 1: the token scores are the [CLS] row over the patch columns)
///   P2    n_keep <= M - P1; P3 n_conn <= n_keep (0: token level only)
///   Y     int32 (n_keep): kept patch indices, ascending
///   AUX0  int32 (n_keep, n_conn), stride AS: per kept row a, the kept keys b (indices into
///         the kept patch part) with the largest map[P1 + idx[a]][P1 + idx[b]], ascending
///   AUX2  int32 (n_keep): origin out, the original patch id of every kept token
///   FLAG_ORIGIN: AUX1 int32 (M - P1) origin in, and origin out[a] = origin in[idx[a]];
///         without it origin out = idx (the first selector), written only when AUX2 != 0
/// Every output is written after every check: a bad origin index leaves them untouched.
inline ap_uint<32> op_select(word_t* mem, ap_uint<32> mem_bytes, const Desc& d) {
    const ap_uint<32> m_u = d.u(DW_M), pre_u = d.u(DW_P1), keep_u = d.u(DW_P2), conn_u = d.u(DW_P3);
    const bool origin = d.has(FLAG_ORIGIN);
    if (m_u == 0 || m_u > CFG_MAX_TOKENS || pre_u > CFG_MAX_PREFIX || pre_u >= m_u) return ST_BAD_SIZE;
    if (pre_u == 0) return ST_BAD_PARAM;  // ranking without a [CLS] row is not implemented
    const int M = m_u, prefix = pre_u, n_patch = M - prefix;
    if (keep_u == 0 || keep_u > ap_uint<32>(n_patch) || conn_u > keep_u) return ST_BAD_SIZE;
    const int n_keep = keep_u, n_conn = conn_u;
    const bool write_origin = origin || d.u(DW_AUX2) != 0;
    if (!tensor_ok(d.u(DW_X), M, d.u(DW_XS), M, 4, mem_bytes) ||
        !tensor_ok(d.u(DW_Y), 1, n_keep, n_keep, 4, mem_bytes) ||
        (n_conn > 0 && !tensor_ok(d.u(DW_AUX0), n_keep, d.u(DW_AS), n_conn, 4, mem_bytes)) ||
        (origin && !tensor_ok(d.u(DW_AUX1), 1, n_patch, n_patch, 4, mem_bytes)) ||
        (write_origin && !tensor_ok(d.u(DW_AUX2), 1, n_keep, n_keep, 4, mem_bytes)))
        return ST_BAD_ADDRESS;

    // A map row (cyclic by the 4 int32 lanes of a beat), and the scores ranked from it (cyclic
    // by CFG_SEL_LANES for the rank lanes).
    i32_t row[CFG_MAX_TOKENS];
    i32_t scores[CFG_MAX_TOKENS];
#pragma HLS ARRAY_PARTITION variable = row cyclic factor = CFG_I32_PER_WORD
#pragma HLS ARRAY_PARTITION variable = scores cyclic factor = CFG_SEL_LANES
    i32_t idx[CFG_MAX_TOKENS], org_in[CFG_MAX_TOKENS], org_out[CFG_MAX_TOKENS], list[CFG_MAX_TOKENS];
#pragma HLS ARRAY_PARTITION variable = idx cyclic factor = CFG_I32_PER_WORD
#pragma HLS ARRAY_PARTITION variable = org_in cyclic factor = CFG_I32_PER_WORD
#pragma HLS ARRAY_PARTITION variable = org_out cyclic factor = CFG_I32_PER_WORD
#pragma HLS ARRAY_PARTITION variable = list cyclic factor = CFG_I32_PER_WORD

    // Token level: the [CLS] row over the patch columns.
    load_i32<CFG_MAX_TOKENS>(mem, d.u(DW_X), M, row);
    sel_scores(row, prefix, true, idx, n_patch, scores);
    sel_topk(scores, n_patch, n_keep, idx);

    if (origin) load_i32<CFG_MAX_TOKENS>(mem, d.u(DW_AUX1), n_patch, org_in);
    bool ok = true;
    SIM_LOOP(CNT_SEL_ORIGIN, n_keep);
    // One kept token per cycle: its original patch id, checked against the largest patch count.
    // II=1: one random read of org_in, one write of org_out; `ok` is a one-gate recurrence.
SEL_ORIGIN:
    for (int a = 0; a < n_keep; a++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
        const i32_t v = origin ? org_in[idx[a]] : idx[a];
        ok = ok && v >= 0 && v < CFG_MAX_TOKENS - prefix;
        org_out[a] = v;
    }
    if (!ok) return ST_BAD_INDEX;
    store_i32<CFG_MAX_TOKENS>(mem, d.u(DW_Y), n_keep, idx);
    if (write_origin) store_i32<CFG_MAX_TOKENS>(mem, d.u(DW_AUX2), n_keep, org_out);

    // Attention level: row P1 + idx[a] of the map over the columns P1 + idx[b].
SEL_CONN_ROWS:
    for (int a = 0; a < (n_conn > 0 ? n_keep : 0); a++) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = CFG_MAX_TOKENS
        load_i32<CFG_MAX_TOKENS>(mem, d.u(DW_X) + ap_uint<32>(prefix + idx[a]) * d.u(DW_XS) * 4, M, row);
        sel_scores(row, prefix, false, idx, n_keep, scores);
        sel_topk(scores, n_keep, n_conn, list);
        store_i32<CFG_MAX_TOKENS>(mem, d.u(DW_AUX0) + ap_uint<32>(a) * d.u(DW_AS) * 4, n_conn, list);
    }
    return ST_DONE;
}

#endif
