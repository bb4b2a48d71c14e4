// OP_ATTENTION: the multi-head attention core softmax(q k^T 2^-sh) v, dense or over the
// TA-Selector's connection lists, as a row engine.
//
// Semantics: hls/README.md (op table) and docs/fixed_point.md "softmax", "attention"; the oracle
// is reference/ops_forward.py (attention, attention_sparse, softmax_wide, narrow_probs).
//
// Architecture. K and V of every token (columns C..2C-1 and 2C..3C-1 of the qkv rows) are
// loaded on chip once per op. Each query row is then processed with all heads in parallel over
// the C channel lanes (head h owns channels h*D .. h*D+D-1) and CFG_ATTN_KEYS keys per cycle:
//   QK     scores of the row's keys, left in the 48-bit accumulator (fs = 2 fqkv + log4 D), and
//          the row maximum per head
//   EXP    z = rshift_round(s - max, SH0) clamped below at -16 (at 14 fractional bits),
//          e = exp table, S = sum of e per head
//   RECIP  (r, sh) = recip(S) per head
//   PV     p_wide = rshift_round(e r, sh - 27), p = sat16(rshift_round(p_wide, 12)),
//          acc += p v on every channel lane; the ctx row is requant(acc, SH1)
// followed, when asked for, by the MAP row (head-summed p_wide by key index, which OP_SELECT
// ranks) and the PROBS rows (p per head in key-list order, which the backward reads).
//
// Keys of a row: all M tokens when dense. With FLAG_SPARSE a patch row i >= P1 attends to the
// P1 prefix keys followed by its P2 listed keys (AUX0 row i - P1, int32 indices into the patch
// part); prefix rows attend to every key. A row's list is checked (every index < M - P1)
// before the row is computed: a bad index stops the op with ST_BAD_INDEX and leaves the rows
// from that one on unwritten.
//
// The backward (OP_ATTENTION_BWD) is in attention_backward.h.
//
// Buffers (buffers.h): K and V of every token live in the token store, one copy per key lane:
// bank u holds K of token t in row t and V in row TOK_V + t, so key u of a group reads bank u
// (one row of CFG_MAX_DIM channels per bank per cycle; QK reads K rows, PV reads V rows, never
// both in one loop, so one read port per bank serves them). The exp knots are copied into the
// engine's table replicas (EngineBuffers::tab). QK and PV each multiply CFG_MAX_DIM x
// CFG_ATTN_KEYS = 1536 16x16 pairs per cycle on the engine's one multiplier array
// (mac_array.h, shared with the matrix core). bench/hls_resources.py counts the memories.
#ifndef TRILEVEL_OPS_ATTENTION_H
#define TRILEVEL_OPS_ATTENTION_H

#include "../buffers.h"
#include "../desc.h"
#include "../mac_array.h"
#include "../memory.h"

#define ATTN_SCORE_FRAC 27  // wide probabilities (reference SCORE_FRAC): what OP_SELECT ranks
#define ATTN_PROB_FRAC 15   // stored probabilities (reference PROB_FRAC)

/// log4 of a power of 4, at compile time (sizes the per-head adder tree).
constexpr int attn_log4(int v) {
    int k = 0;
    while (v > 1) {
        v /= 4;
        k++;
    }
    return k;
}

const int ATTN_TREE_LEVELS = attn_log4(CFG_MAX_HEAD_DIM);       // 4-input adder levels: 3 for D <= 64
const int ATTN_EXP_COPIES = TAB_ATTN_COPIES;                    // one copy serves 2 lookups a cycle
const int ATTN_MAX_GROUPS = (CFG_MAX_TOKENS + CFG_ATTN_KEYS - 1) / CFG_ATTN_KEYS;
const int ATTN_EXP_FLOOR = LUT_EXP_LO * (1 << LUT_EXP_IN_FRAC);  // -16 at 14 fractional bits

static_assert(CFG_ATTN_KEYS * CFG_MAX_DIM <= MAC_LANES, "the row engine maps onto the multiplier array");
static_assert(1 << (2 * ATTN_TREE_LEVELS) == CFG_MAX_HEAD_DIM, "CFG_MAX_HEAD_DIM must be a power of 4");
static_assert(CFG_MAX_DIM % CFG_MAX_HEAD_DIM == 0, "the adder tree groups channels by CFG_MAX_HEAD_DIM");

typedef ap_uint<16> tok_t;  // a token index (< CFG_MAX_TOKENS)

/// Per-head sums of one key's channel products. tree[0][c] holds the product of channel c; a
/// fixed tree of 4-input adders fills level k with the sums of channels n*4^k .. n*4^k + 4^k - 1,
/// so level log4 D holds the heads' dot products. Only nodes below channel C are computed.
inline void attn_head_sums(acc_t tree[ATTN_TREE_LEVELS + 1][CFG_MAX_DIM], int C, int log4d, acc_t out[CFG_MAX_HEADS]) {
#pragma HLS INLINE
ATTN_TREE_LEVEL:
    for (int k = 1; k <= ATTN_TREE_LEVELS; k++) {
    ATTN_TREE_NODE:
        for (int n = 0; n < (CFG_MAX_DIM >> (2 * k)); n++) {
            if ((n << (2 * k)) < C)
                tree[k][n] =
                    tree[k - 1][4 * n] + tree[k - 1][4 * n + 1] + tree[k - 1][4 * n + 2] + tree[k - 1][4 * n + 3];
        }
    }
ATTN_TREE_HEAD:
    for (int h = 0; h < CFG_MAX_HEADS; h++) out[h] = tree[log4d][h];
}

/// Copies the exp knots into ATTN_EXP_COPIES of the engine's table replicas, each split into
/// its even and odd knots, so that EXP evaluates CFG_MAX_HEADS x CFG_ATTN_KEYS table lookups
/// per cycle.
inline void attn_copy_exp(const Luts& L, knot_t tab[TAB_COPIES][2][TAB_HALF]) {
    SIM_LOOP(CNT_ATTN_EXP_COPY, LUT_EXP_KNOTS);
    // II=1: one read of L.exp_t and one write into one bank of each copy per cycle.
ATTN_EXP_COPY:
    for (int i = 0; i < LUT_EXP_KNOTS; i++) {
#pragma HLS PIPELINE II = 1
        knot_t v = L.exp_t[i];
    ATTN_EXP_COPY_LANE:
        for (int k = 0; k < ATTN_EXP_COPIES; k++) tab[k][i & 1][i >> 1] = v;
    }
}

/// The exp table at z (14 fractional bits): pwl_eval (fixed.h) with the knots split by parity,
/// so knots i and i+1 of a lookup are read from two different banks, one read each.
inline wide_t attn_exp(const knot_t even[TAB_HALF], const knot_t odd[TAB_HALF], wide_t z) {
#pragma HLS INLINE
    const wide_t lo = wide_t(LUT_EXP_LO) << LUT_EXP_IN_FRAC;
    const wide_t hi = wide_t(LUT_EXP_HI) << LUT_EXP_IN_FRAC;
    const int s = LUT_EXP_IN_FRAC - LUT_EXP_STEP_BITS;
    const wide_t u = (z < lo ? lo : z > hi ? hi : z) - lo;
    const ap_uint<32> i = ap_uint<32>(u >> s);
    const wide_t r = u & ((wide_t(1) << s) - 1);
    const wide_t e = even[(i + 1) >> 1], o = odd[i >> 1];  // knot i and i + 1, in some order
    const wide_t t0 = i[0] ? o : e, t1 = i[0] ? e : o;
    return t0 + rshift_round((t1 - t0) * r, s);
}

/// Loads K and V of tokens 0..M-1 (qkv row t, columns C..3C-1) into every bank of the token
/// store: K of token t into row t, V into row TOK_V + t.
inline void attn_load_kv(const word_t* mem, addr_t x, ap_uint<32> xs, int M, int C,
                         word_t tok[TOK_BANKS][TOK_DEPTH][TOK_BEATS]) {
    q16_t krow[CFG_MAX_DIM], vrow[CFG_MAX_DIM];
#pragma HLS ARRAY_PARTITION variable = krow complete
#pragma HLS ARRAY_PARTITION variable = vrow complete
    const int first = C / CFG_I16_PER_WORD;                                       // beat holding column C
    const int beats = (3 * C + CFG_I16_PER_WORD - 1) / CFG_I16_PER_WORD - first;  // up to column 3C-1
    const int k_last = (2 * C - 1) / CFG_I16_PER_WORD - first;                    // beat completing K
    SIM_LOOP(CNT_ATTN_KV_LOAD, M * beats);
    // One iteration reads one beat of a token's K|V columns and routes its 8 lanes into the
    // krow/vrow registers; the beat that completes K writes the K row into every bank, the
    // token's last beat the V row (a bank takes one whole-row write per cycle: one write
    // port). II=1: registers take any lane, and for C > 2 K and V complete in different beats.
    // For C <= 2 one beat holds both: the V rows then follow in ATTN_V_LOAD.
    const bool v_apart = k_last != beats - 1;
    int t = 0, b = 0;
ATTN_KV_LOAD:
    for (int it = 0; it < M * beats; it++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS * (2 * CFG_MAX_DIM / CFG_I16_PER_WORD + 1)
        word_t w = mem[x / CFG_AXI_BYTES + ap_uint<32>(t) * xs / CFG_I16_PER_WORD + first + b];
    ATTN_KV_LANE:
        for (int j = 0; j < CFG_I16_PER_WORD; j++) {
            int col = (first + b) * CFG_I16_PER_WORD + j;
            q16_t v = q16_t(w.range(16 * j + 15, 16 * j));
            if (col >= C && col < 2 * C) krow[col - C] = v;
            if (col >= 2 * C && col < 3 * C) vrow[col - 2 * C] = v;
        }
        const bool k_done = b == k_last, v_done = b == beats - 1;
        if (k_done || (v_done && v_apart)) {
            word_t row[TOK_BEATS];
            tok_pack(k_done ? krow : vrow, row);
            const int dst = k_done ? t : TOK_V + t;
        ATTN_KV_COPY:
            for (int r = 0; r < TOK_BANKS; r++)
                for (int s = 0; s < TOK_BEATS; s++) tok[r][dst][s] = row[s];
        }
        if (v_done) {
            b = 0;
            t++;
        } else {
            b++;
        }
    }
    if (!v_apart) {
        SIM_LOOP(CNT_ATTN_V_LOAD, M);
        // C <= 2: one beat per token (the first, which held K too) into its V row. II=1: one
        // gmem_a read and one row write per bank per cycle.
    ATTN_V_LOAD:
        for (int u = 0; u < M; u++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
            word_t w = mem[x / CFG_AXI_BYTES + ap_uint<32>(u) * xs / CFG_I16_PER_WORD + first];
            for (int j = 0; j < CFG_I16_PER_WORD; j++) {
                int col = first * CFG_I16_PER_WORD + j;
                if (col >= 2 * C && col < 3 * C) vrow[col - 2 * C] = q16_t(w.range(16 * j + 15, 16 * j));
            }
            word_t row[TOK_BEATS];
            tok_pack(vrow, row);
            for (int r = 0; r < TOK_BANKS; r++)
                for (int s = 0; s < TOK_BEATS; s++) tok[r][TOK_V + u][s] = row[s];
        }
    }
}

/// Checks a patch row's list (n indices into the patch part, each < n_patch) and writes its
/// keys: keys[0..prefix) = the prefix tokens, keys[prefix + j] = prefix + list[j].
/// Returns false at a bad index (nothing is written outside keys).
inline bool attn_row_keys(const i32_t list[CFG_MAX_TOKENS], int n, int prefix, int n_patch,
                          tok_t keys[CFG_MAX_TOKENS]) {
ATTN_KEYS_PREFIX:
    for (int l = 0; l < CFG_MAX_PREFIX; l++)
        if (l < prefix) keys[l] = l;
    bool ok = true;
    SIM_LOOP(CNT_ATTN_KEYS, n);
    // II=1: one list read and one key write per cycle; `ok` is an AND, a one-gate recurrence.
ATTN_KEYS:
    for (int j = 0; j < n; j++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
        i32_t v = list[j];
        ok = ok && v >= 0 && v < n_patch;
        keys[prefix + j] = tok_t(prefix + v);
    }
    return ok;
}

/// OP_ATTENTION (hls/README.md). Fields:
///   X    int16 qkv (M, 3C), stride XS, at fqkv: q | k | v, head h at channels h*D..h*D+D-1
///   Y    int16 ctx (M, C), stride YS, at fctx
///   N    C; P0 heads (D = C / P0 a power of 4); P1 prefix tokens
///   SH0  2 fqkv + log4 D - 14 (score to exp input); SH1 15 + fqkv - fctx (p v to ctx)
///   FLAG_SPARSE: AUX0 int32 lists (M - P1, P2), stride AS, indices into the patch part
///   FLAG_MAP:    AUX1 int32 (M, M), row stride M padded to 4: head-summed p_wide at f = 27,
///                0 for keys a row does not attend to
///   FLAG_PROBS:  AUX2 int16 (P0 M, M), row stride M padded to 8: row h*M + i holds p (f = 15)
///                of head h, row i over its key list in list order, 0 beyond
inline ap_uint<32> op_attention(word_t* mem, ap_uint<32> mem_bytes, const Desc& d, const Luts& L,
                                EngineBuffers& buf) {
    const ap_uint<32> m_u = d.u(DW_M), c_u = d.u(DW_N), h_u = d.u(DW_P0), pre_u = d.u(DW_P1), nc_u = d.u(DW_P2);
    const bool sparse = d.has(FLAG_SPARSE), want_map = d.has(FLAG_MAP), want_probs = d.has(FLAG_PROBS);
    if (m_u == 0 || m_u > CFG_MAX_TOKENS || c_u == 0 || c_u > CFG_MAX_DIM || h_u == 0 || h_u > CFG_MAX_HEADS ||
        pre_u > CFG_MAX_PREFIX || pre_u > m_u)
        return ST_BAD_SIZE;
    if (c_u % h_u != 0) return ST_BAD_PARAM;
    const int M = m_u, C = c_u, H = h_u, prefix = pre_u;
    const int D = C / H;
    if (D > CFG_MAX_HEAD_DIM) return ST_BAD_SIZE;
    const int log2d = 31 - int(ap_uint<32>(D).countLeadingZeros());
    if ((D & (D - 1)) != 0 || (log2d & 1) != 0) return ST_BAD_PARAM;  // not a power of 4
    const int log4d = log2d / 2;
    const int n_patch = M - prefix;
    if (sparse && (n_patch == 0 || nc_u == 0 || nc_u > ap_uint<32>(n_patch))) return ST_BAD_SIZE;
    const int n_conn = sparse ? int(nc_u) : 0;
    const ap_uint<32> map_stride = (M + CFG_I32_PER_WORD - 1) / CFG_I32_PER_WORD * CFG_I32_PER_WORD;
    const ap_uint<32> probs_stride = (M + CFG_I16_PER_WORD - 1) / CFG_I16_PER_WORD * CFG_I16_PER_WORD;
    if (!tensor_ok(d.u(DW_X), M, d.u(DW_XS), 3 * C, 2, mem_bytes) ||
        !tensor_ok(d.u(DW_Y), M, d.u(DW_YS), C, 2, mem_bytes) ||
        (sparse && !tensor_ok(d.u(DW_AUX0), n_patch, d.u(DW_AS), n_conn, 4, mem_bytes)) ||
        (want_map && !tensor_ok(d.u(DW_AUX1), M, map_stride, M, 4, mem_bytes)) ||
        (want_probs && !tensor_ok(d.u(DW_AUX2), H * M, probs_stride, M, 2, mem_bytes)))
        return ST_BAD_ADDRESS;
    const int sh0 = d.s(DW_SH0), sh1 = d.s(DW_SH1);

    // K and V of every token in the token store (bank u serves key lane u), the exp knots in the
    // table replicas: buffers.h.
    word_t(&tok)[TOK_BANKS][TOK_DEPTH][TOK_BEATS] = buf.tok;
    knot_t(&tab)[TAB_COPIES][2][TAB_HALF] = buf.tab;
    // One query row's state. Key-indexed buffers are split cyclically by CFG_ATTN_KEYS, so key
    // slot u of a group always uses bank u; heads are separate memories.
    q16_t q[CFG_MAX_DIM];
    acc_t acc[CFG_MAX_DIM];
    q16_t ctx[CFG_MAX_DIM];
#pragma HLS ARRAY_PARTITION variable = q complete
#pragma HLS ARRAY_PARTITION variable = acc complete
#pragma HLS ARRAY_PARTITION variable = ctx complete
    i32_t list[CFG_MAX_TOKENS];
    tok_t keys[CFG_MAX_TOKENS];
#pragma HLS ARRAY_PARTITION variable = list cyclic factor = CFG_I32_PER_WORD
#pragma HLS ARRAY_PARTITION variable = keys cyclic factor = CFG_ATTN_KEYS
    acc_t sbuf[CFG_MAX_HEADS][CFG_MAX_TOKENS];
    knot_t ebuf[CFG_MAX_HEADS][CFG_MAX_TOKENS];  // e <= 2^24 (the exp table at z = 0)
    q16_t pbuf[CFG_MAX_HEADS][CFG_MAX_TOKENS];
#pragma HLS ARRAY_PARTITION variable = sbuf complete dim = 1
#pragma HLS ARRAY_PARTITION variable = sbuf cyclic factor = CFG_ATTN_KEYS dim = 2
#pragma HLS ARRAY_PARTITION variable = ebuf complete dim = 1
#pragma HLS ARRAY_PARTITION variable = ebuf cyclic factor = CFG_ATTN_KEYS dim = 2
#pragma HLS ARRAY_PARTITION variable = pbuf complete dim = 1
#pragma HLS ARRAY_PARTITION variable = pbuf cyclic factor = CFG_ATTN_KEYS dim = 2
    i32_t pwsum[CFG_MAX_TOKENS];  // head-summed p_wide by list position (< 6 x 2^27)
#pragma HLS ARRAY_PARTITION variable = pwsum cyclic factor = CFG_ATTN_KEYS
    // The MAP row by key index; all zero between rows (its store clears what it reads).
    static i32_t map_row[CFG_MAX_TOKENS];
#pragma HLS ARRAY_PARTITION variable = map_row cyclic factor = CFG_I32_PER_WORD
    acc_t rmax[CFG_MAX_HEADS];
    wide_t esum[CFG_MAX_HEADS];
    knot_t rcp[CFG_MAX_HEADS];
    int rsh[CFG_MAX_HEADS];
#pragma HLS ARRAY_PARTITION variable = rmax complete
#pragma HLS ARRAY_PARTITION variable = esum complete
#pragma HLS ARRAY_PARTITION variable = rcp complete
#pragma HLS ARRAY_PARTITION variable = rsh complete

    attn_copy_exp(L, tab);
    attn_load_kv(mem, d.u(DW_X), d.u(DW_XS), M, C, tok);

ATTN_ROWS:
    for (int i = 0; i < M; i++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
        const bool listed = sparse && i >= prefix;
        const int len = listed ? prefix + n_conn : M;
        const int groups = (len + CFG_ATTN_KEYS - 1) / CFG_ATTN_KEYS;
        if (listed) {
            load_i32<CFG_MAX_TOKENS>(mem, d.u(DW_AUX0) + ap_uint<32>(i - prefix) * d.u(DW_AS) * 4, n_conn, list);
            if (!attn_row_keys(list, n_conn, prefix, n_patch, keys)) return ST_BAD_INDEX;
        }
        load_i16<CFG_MAX_DIM>(mem, d.u(DW_X) + ap_uint<32>(i) * d.u(DW_XS) * 2, C, q);
    ATTN_ROW_INIT:
        for (int h = 0; h < CFG_MAX_HEADS; h++) esum[h] = 0;
    ATTN_ACC_INIT:
        for (int c = 0; c < CFG_MAX_DIM; c++) acc[c] = 0;

        SIM_LOOP(CNT_ATTN_QK, groups);
        // One iteration: CFG_ATTN_KEYS keys x C channel products, per-head adder trees, the
        // scores into sbuf and the group's maximum into rmax. II=1: keys[] and sbuf are
        // cyclic by CFG_ATTN_KEYS (one bank per key slot), key u's K row comes from token-store
        // bank u (one row read per bank); the only recurrence is rmax = max(rmax, group max),
        // one compare.
    ATTN_QK:
        for (int g = 0; g < groups; g++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = ATTN_MAX_GROUPS
            acc_t gmax[CFG_MAX_HEADS];
#pragma HLS ARRAY_PARTITION variable = gmax complete
            q16_t qa[MAC_LANES], kb[MAC_LANES];
            acc_t zero[MAC_LANES], prod[MAC_LANES];
        ATTN_QK_KEY:
            for (int u = 0; u < CFG_ATTN_KEYS; u++) {
                const int l = g * CFG_ATTN_KEYS + u;
                const int key = l >= len ? 0 : listed ? int(keys[l]) : l;
                q16_t krow[CFG_MAX_DIM];
                tok_unpack(tok[u][key], C, krow);
            ATTN_QK_CHANNEL:
                for (int c = 0; c < CFG_MAX_DIM; c++) {
                    qa[u * CFG_MAX_DIM + c] = c < C ? q[c] : q16_t(0);
                    kb[u * CFG_MAX_DIM + c] = krow[c];
                    zero[u * CFG_MAX_DIM + c] = 0;
                }
            }
            mac_products(qa, kb, zero, prod);  // the engine's one multiplier array (mac_array.h)
        ATTN_QK_SUM:
            for (int u = 0; u < CFG_ATTN_KEYS; u++) {
                const int l = g * CFG_ATTN_KEYS + u;
                const bool valid = l < len;
                acc_t tree[ATTN_TREE_LEVELS + 1][CFG_MAX_DIM];
#pragma HLS ARRAY_PARTITION variable = tree complete dim = 0
            ATTN_QK_PRODUCT:
                for (int c = 0; c < CFG_MAX_DIM; c++) tree[0][c] = prod[u * CFG_MAX_DIM + c];
                acc_t s[CFG_MAX_HEADS];
                attn_head_sums(tree, C, log4d, s);
            ATTN_QK_HEAD:
                for (int h = 0; h < CFG_MAX_HEADS; h++) {
                    if (valid && h < H) sbuf[h][l] = s[h];
                    // key 0 of a group is always valid (g < groups)
                    if (u == 0 || (valid && s[h] > gmax[h])) gmax[h] = s[h];
                }
            }
        ATTN_QK_MAX:
            for (int h = 0; h < CFG_MAX_HEADS; h++)
                if (g == 0 || gmax[h] > rmax[h]) rmax[h] = gmax[h];
        }

        SIM_LOOP(CNT_ATTN_EXP, groups);
        // One iteration: CFG_MAX_HEADS x CFG_ATTN_KEYS exp lookups; lookup (h, u) uses copy
        // (h CFG_ATTN_KEYS + u) / 2 and reads one knot from its even bank and one from its odd
        // bank, so each bank serves two lookups through its two ports. II=1: sbuf/ebuf as in
        // QK; the recurrence esum += (sum of the group) is one add.
    ATTN_EXP:
        for (int g = 0; g < groups; g++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = ATTN_MAX_GROUPS
        ATTN_EXP_HEAD:
            for (int h = 0; h < CFG_MAX_HEADS; h++) {
                wide_t part = 0;
            ATTN_EXP_KEY:
                for (int u = 0; u < CFG_ATTN_KEYS; u++) {
                    const int l = g * CFG_ATTN_KEYS + u;
                    if (h < H && l < len) {
                        wide_t z = rshift_round(wide_t(sbuf[h][l]) - wide_t(rmax[h]), sh0);
                        if (z < ATTN_EXP_FLOOR) z = ATTN_EXP_FLOOR;
                        const int k = (h * CFG_ATTN_KEYS + u) / 2;
                        wide_t e = attn_exp(tab[k][0], tab[k][1], z);
                        ebuf[h][l] = knot_t(e);
                        part += e;
                    }
                }
                esum[h] += part;
            }
        }

        SIM_LOOP(CNT_ATTN_RECIP, H);
        // One head per iteration. II=1: the recip table is read at knots i and i+1 through
        // its two ports; no recurrence.
    ATTN_RECIP:
        for (int h = 0; h < H; h++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_HEADS
            int sh;
            rcp[h] = knot_t(recip(L, esum[h], sh));  // S >= 2^24 (the maximum's e): r <= 2^24
            rsh[h] = sh;
        }

        SIM_LOOP(CNT_ATTN_PV, groups);
        // One iteration: the probabilities of CFG_ATTN_KEYS keys for every head, their head
        // sum, and C x CFG_ATTN_KEYS products p v added into the channel accumulators (lane c
        // takes the probability of its head c >> log2 D). II=1: V as K in QK, pbuf/pwsum
        // banks take the group's consecutive positions; the recurrence on acc[c] goes through
        // key 0's lane (its DSP adds acc[c] to its product) and a 4-input add of the keys'
        // lanes: one pass per cycle.
    ATTN_PV:
        for (int g = 0; g < groups; g++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = ATTN_MAX_GROUPS
            q16_t p[CFG_ATTN_KEYS][CFG_MAX_HEADS];
            int key[CFG_ATTN_KEYS];
#pragma HLS ARRAY_PARTITION variable = p complete dim = 0
#pragma HLS ARRAY_PARTITION variable = key complete
        ATTN_PV_KEY:
            for (int u = 0; u < CFG_ATTN_KEYS; u++) {
                const int l = g * CFG_ATTN_KEYS + u;
                const bool valid = l < len;
                key[u] = !valid ? 0 : listed ? int(keys[l]) : l;
                wide_t sum = 0;
            ATTN_PV_HEAD:
                for (int h = 0; h < CFG_MAX_HEADS; h++) {
                    wide_t pw = 0;
                    if (valid && h < H)
                        pw = rshift_round(wide_t(ebuf[h][l]) * rcp[h], rsh[h] - ATTN_SCORE_FRAC);  // e r < 2^49
                    p[u][h] = sat16(rshift_round(pw, ATTN_SCORE_FRAC - ATTN_PROB_FRAC));
                    if (valid && h < H) pbuf[h][l] = p[u][h];
                    sum += pw;
                }
                if (valid) pwsum[l] = i32_t(sum);
            }
            q16_t pa[MAC_LANES], vb[MAC_LANES];
            acc_t ca[MAC_LANES], prod[MAC_LANES];
        ATTN_PV_OPERANDS:
            for (int u = 0; u < CFG_ATTN_KEYS; u++) {
                q16_t vrow[CFG_MAX_DIM];
                tok_unpack(tok[u][TOK_V + key[u]], C, vrow);
                for (int c = 0; c < CFG_MAX_DIM; c++) {
                    pa[u * CFG_MAX_DIM + c] = c < C ? p[u][c >> log2d] : q16_t(0);
                    vb[u * CFG_MAX_DIM + c] = vrow[c];
                    ca[u * CFG_MAX_DIM + c] = u == 0 && c < C ? acc[c] : acc_t(0);  // key 0's lane adds acc
                }
            }
            mac_products(pa, vb, ca, prod);  // the engine's one multiplier array (mac_array.h)
        ATTN_PV_CHANNEL:
            for (int c = 0; c < CFG_MAX_DIM; c++) {
                if (c < C) {
                    acc_t t = 0;
                ATTN_PV_LANE_KEY:
                    for (int u = 0; u < CFG_ATTN_KEYS; u++) t += prod[u * CFG_MAX_DIM + c];
                    acc[c] = t;
                }
            }
        }

    ATTN_CTX:
        for (int c = 0; c < CFG_MAX_DIM; c++) ctx[c] = requant(acc[c], sh1);
        store_i16<CFG_MAX_DIM>(mem, d.u(DW_Y) + ap_uint<32>(i) * d.u(DW_YS) * 2, C, ctx);

        if (want_map) {
            SIM_LOOP(CNT_ATTN_MAP_SCATTER, len);
            // One list position per cycle into its key's slot. II=1: one read of keys and
            // pwsum, one write of map_row, no recurrence (a key appears once in a list).
        ATTN_MAP_SCATTER:
            for (int l = 0; l < len; l++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_TOKENS
                map_row[listed ? int(keys[l]) : l] = pwsum[l];
            }
            const int beats = map_stride / CFG_I32_PER_WORD;
            const ap_uint<32> base = (d.u(DW_AUX1) + ap_uint<32>(i) * map_stride * 4) / CFG_AXI_BYTES;
            SIM_LOOP(CNT_ATTN_MAP_STORE, beats);
            // One beat of 4 int32 per cycle, and the 4 slots read are cleared for the next
            // row. II=1: map_row is cyclic by 4, each bank is read on one port and cleared
            // through the other.
        ATTN_MAP_STORE:
            for (int b = 0; b < beats; b++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = (CFG_MAX_TOKENS + CFG_I32_PER_WORD - 1) / CFG_I32_PER_WORD
                word_t w = 0;
            ATTN_MAP_LANE:
                for (int j = 0; j < CFG_I32_PER_WORD; j++) {
                    const int k = b * CFG_I32_PER_WORD + j;
                    if (k < M) {
                        w.range(32 * j + 31, 32 * j) = ap_uint<32>(map_row[k]);
                        map_row[k] = 0;
                    }
                }
                mem[base + b] = w;
            }
        }

        if (want_probs) {
            const int beats = probs_stride / CFG_I16_PER_WORD;
            SIM_LOOP(CNT_ATTN_PROBS_STORE, H * beats);
            // One beat (8 probabilities of one head) per cycle, head by head; positions past
            // the key list are written as 0. II=1 while CFG_I16_PER_WORD <= 2 CFG_ATTN_KEYS
            // (8 <= 2 x 4): a head's pbuf has CFG_ATTN_KEYS banks of two ports each.
            int h = 0, b = 0;
        ATTN_PROBS_STORE:
            for (int it = 0; it < H * beats; it++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = CFG_MAX_HEADS * (CFG_MAX_TOKENS + CFG_I16_PER_WORD - 1) / CFG_I16_PER_WORD
                word_t w = 0;
            ATTN_PROBS_LANE:
                for (int j = 0; j < CFG_I16_PER_WORD; j++) {
                    const int l = b * CFG_I16_PER_WORD + j;
                    if (l < len) w.range(16 * j + 15, 16 * j) = ap_uint<16>(pbuf[h][l]);
                }
                const ap_uint<32> row = ap_uint<32>(h) * M + i;
                mem[(d.u(DW_AUX2) + row * probs_stride * 2) / CFG_AXI_BYTES + b] = w;
                if (b == beats - 1) {
                    b = 0;
                    h++;
                } else {
                    b++;
                }
            }
        }
    }
    return ST_DONE;
}

#endif
