// The engine's on-chip memories, declared once (a `static EngineBuffers` in trilevel_engine)
// and passed by reference to the ops that use them.
//
// The descriptor walker runs one op at a time, so ops that never run together reuse the same
// memories instead of each declaring its own: on the device each array below is one set of
// block RAMs (or registers), whatever the number of ops that address it. Each op keeps its own
// layout inside a shared memory; what must agree is the partitioning, which is chosen here so
// that it serves every user at its II (each member's comment says how).
//
//   xpanel  LINEAR's X rows; LINEAR_BWD_DX's dy rows; LINEAR_BWD_DW's x rows
//   tok     ATTENTION's K and V (one copy per key lane); LINEAR's two W tiles (ping-pong);
//           LINEAR_BWD_DX's W panel and LINEAR_BWD_DW's dy panel; ATTENTION_BWD's q, k, v
//           and its 48-bit dk / dv accumulators
//   mc_acc  the matrix core's accumulators (LINEAR, LINEAR_BWD_DX, LINEAR_BWD_DW)
//   tab     table replicas: ATTENTION's exp knots, GELU's gelu knots, GELU_BWD's gelu' knots
//   vrow, vrow32, vwide  the vector unit's row buffers: the rows of ADD, LAYERNORM, GELU and
//           their backward ops, GRAD_ADD, GRAD_REQUANT, SGD, CE_GRAD, SCATTER, LINEAR's bias
//           and LINEAR_BWD_DW's db
//
// The attention's per-row state (one query row's scores, exp values and probabilities), the
// index lists and a few small tables stay local to their op: bench/hls_resources.py counts
// them per op.
#ifndef TRILEVEL_BUFFERS_H
#define TRILEVEL_BUFFERS_H

#include "fixed.h"
#include "memory.h"

// ---- the matrix core's operand panels (LINEAR and its backward)
static const int LIN_K_WORDS = (CFG_MAX_K + CFG_I16_PER_WORD - 1) / CFG_I16_PER_WORD;  // beats of one X/W row
static const int LIN_ROW_TILES = (CFG_MAX_TOKENS + CFG_MC_ROWS - 1) / CFG_MC_ROWS;     // row tiles of X
// LINEAR_BWD_DW keeps x by beats: beat b of token m in bank b % MC_ROWS, word m XW_ROW + b / MC_ROWS
static const int XW_ROW = (LIN_K_WORDS + CFG_MC_ROWS - 1) / CFG_MC_ROWS;
// beats per xpanel bank: LINEAR's X tiles, or LINEAR_BWD_DW's x by beats, whichever is deeper
static const int XP_DEPTH = LIN_ROW_TILES * LIN_K_WORDS > CFG_MAX_TOKENS * XW_ROW ? LIN_ROW_TILES * LIN_K_WORDS
                                                                                : CFG_MAX_TOKENS * XW_ROW;

// ---- the token store: TOK_BANKS banks of TOK_DEPTH rows of CFG_MAX_DIM int16 (TOK_BEATS beats)
static const int TOK_BANKS = CFG_ATTN_KEYS;
static const int TOK_BEATS = CFG_MAX_DIM / CFG_I16_PER_WORD;
static const int TOK_QROWS = (CFG_MAX_TOKENS + TOK_BANKS - 1) / TOK_BANKS;  // q rows per bank (backward)
static const int TOK_DEPTH = 2 * CFG_MAX_TOKENS + TOK_QROWS;                 // two slabs of tokens, then q
static const int TOK_V = CFG_MAX_TOKENS;                                     // first row of the second slab
static const int TOK_Q = 2 * CFG_MAX_TOKENS;                                 // first row of the q rows
// LINEAR's W tiles: tile half h in banks 2h and 2h + 1, W row j in slot j % WT_SLOTS of bank 2h + j / WT_SLOTS
static const int WT_SLOTS = CFG_MC_COLS / 2;
// LINEAR_BWD_DX's W panel: reduction step n's MC_COLS / 8 beats in bank 0, row n / DX_STEPS
static const int DX_BEATS = CFG_MC_COLS / CFG_I16_PER_WORD;
static const int DX_STEPS = TOK_BEATS / DX_BEATS;
// LINEAR_BWD_DW's dy panel: token m's DW_BEATS beats in bank 0, row m / DW_STEPS (a panel of
// MC_ROWS features may start inside a beat when MC_ROWS is not a multiple of 8: one beat more)
static const int DW_BEATS = (CFG_MC_ROWS + CFG_I16_PER_WORD - 1) / CFG_I16_PER_WORD + (CFG_MC_ROWS % CFG_I16_PER_WORD != 0);
static const int DW_STEPS = TOK_BEATS / DW_BEATS;
// ATTENTION_BWD's accumulators: a 48-bit value takes the room of three int16 lanes, so one dk
// (or dv) row of CFG_MAX_DIM channels fills ACC_WORDS token-store rows of ACC_CH channels each
static const int ACC_WORDS = CFG_ACC_BITS / 16;
static const int ACC_CH = CFG_MAX_DIM / ACC_WORDS;

static_assert(CFG_MAX_OUT <= CFG_MAX_K, "LINEAR_BWD_DX keeps dy (N <= MAX_OUT) where LINEAR keeps X (K <= MAX_K)");
static_assert(CFG_MC_COLS / CFG_I16_PER_WORD <= CFG_MC_ROWS, "a dW column tile's x beats sit in distinct xpanel banks");
static_assert(CFG_MAX_TOKENS * XW_ROW <= XP_DEPTH, "LINEAR_BWD_DW's x fits the xpanel");
static_assert(CFG_MAX_DIM % CFG_I16_PER_WORD == 0, "token rows are whole beats");
static_assert(CFG_ATTN_KEYS == 4,
              "the token store's four banks: one K/V copy per key lane, the two W tiles as bank pairs, "
              "and ATTENTION_BWD's v or k plus the three words of a 48-bit dk or dv row");
static_assert(ACC_WORDS == TOK_BANKS - 1 && CFG_ACC_BITS % 16 == 0 && CFG_MAX_DIM % ACC_WORDS == 0,
              "a 48-bit accumulator row spans the three banks beside the one holding v or k");
static_assert(WT_SLOTS <= TOK_BEATS && LIN_K_WORDS <= TOK_DEPTH, "a W tile fits two token-store banks");
static_assert(DX_STEPS >= 1 && (CFG_MAX_OUT + DX_STEPS - 1) / DX_STEPS <= TOK_DEPTH, "the dX W panel fits bank 0");
static_assert(DW_STEPS >= 1 && (CFG_MAX_TOKENS + DW_STEPS - 1) / DW_STEPS <= TOK_DEPTH, "the dW dy panel fits bank 0");

// ---- table replicas: one dual-port copy serves two lookups a cycle, its knots split by parity
// so that knots i and i + 1 of a lookup come from two different banks
static const int TAB_ATTN_COPIES = CFG_MAX_HEADS * CFG_ATTN_KEYS / 2;  // ATTENTION: heads x keys lookups
static const int TAB_VU_COPIES = CFG_VU_LANES / 2;                     // GELU, GELU_BWD: VU_LANES lookups
static const int TAB_COPIES = TAB_ATTN_COPIES > TAB_VU_COPIES ? TAB_ATTN_COPIES : TAB_VU_COPIES;
static const int TAB_HALF = (LUT_MAX_KNOTS + 1) / 2;
static_assert(CFG_VU_LANES % 2 == 0, "vector lanes come in pairs (one dual-port table replica each)");

// ---- the vector unit's row buffers: the longest row any vector op keeps (GELU's hidden width,
// SGD's weight rows, ADD's and CE_GRAD's rows), cyclic over VU_LANES banks
static const int VROW_LEN = CFG_MAX_HIDDEN > CFG_MAX_K ? (CFG_MAX_HIDDEN > CFG_MAX_OUT ? CFG_MAX_HIDDEN : CFG_MAX_OUT)
                                                       : (CFG_MAX_K > CFG_MAX_OUT ? CFG_MAX_K : CFG_MAX_OUT);
static const int VROWS = 4;    // int16 rows (LAYERNORM: gamma, beta, x, y; its backward: gamma, dy, dx, dbeta)
static const int VROWS32 = 3;  // int32 rows (LAYERNORM_BWD: n, dn, dbeta sums)
static_assert(CFG_VU_LANES >= CFG_I16_PER_WORD, "a load writes one beat's lanes into distinct banks");
static_assert(CFG_MAX_DIM <= VROW_LEN, "LayerNorm rows fit the vector rows");

typedef word_t tok_bank_t[TOK_DEPTH][TOK_BEATS];
typedef q16_t vrow_t[VROW_LEN];
typedef i32_t vrow32_t[VROW_LEN];
typedef knot_t tab_copy_t[2][TAB_HALF];  // [parity][knot / 2]

struct EngineBuffers {
    /// MC_ROWS banks of XP_DEPTH beats (about 688 KB). Partition: complete on dim 1, so the MAC
    /// loop reads one beat of every bank per cycle (LINEAR, LINEAR_BWD_DX: bank i = tile row i;
    /// LINEAR_BWD_DW: MC_COLS / 8 consecutive beats of one token in distinct banks) while a
    /// load writes one beat per cycle through the other port.
    word_t xpanel[CFG_MC_ROWS][XP_DEPTH];
    /// TOK_BANKS banks of TOK_DEPTH rows of TOK_BEATS beats (about 1.7 MB). Partition: complete
    /// on dims 1 and 3, so every beat slot of every bank is its own simple dual-port memory:
    /// a whole row (one key, CFG_MAX_DIM channels) is read from each bank per cycle, and a
    /// load writes one beat (a W row's beat, a panel beat) or a whole row per cycle per bank
    /// through the write port, never part of a memory word.
    word_t tok[TOK_BANKS][TOK_DEPTH][TOK_BEATS];
    /// The matrix core's MC_ROWS x MC_COLS 48-bit accumulators. Partition: complete (registers).
    acc_t mc_acc[CFG_MC_ROWS][CFG_MC_COLS];
    /// TAB_COPIES table copies, each split by knot parity. Partition: complete on dims 1 and 2.
    knot_t tab[TAB_COPIES][2][TAB_HALF];
    /// The vector unit's rows. Partition: complete on dim 1, cyclic by VU_LANES on dim 2, so a
    /// lane group (VU_LANES consecutive elements) reads or writes one element per bank and a
    /// load writes a beat's CFG_I16_PER_WORD lanes into distinct banks: every vector op's II=1.
    q16_t vrow[VROWS][VROW_LEN];
    i32_t vrow32[VROWS32][VROW_LEN];
    wide_t vwide[CFG_MAX_DIM];  // cyclic by VU_LANES (LAYERNORM_BWD's dgamma sums)
};

/// Lane `lane` (0..CFG_I16_PER_WORD-1) of a beat as an int16.
inline q16_t beat_lane(const word_t& w, int lane) {
#pragma HLS INLINE
    return q16_t(w.range(16 * lane + 15, 16 * lane));
}

/// Channel c of a token-store row.
inline q16_t tok_lane(const word_t row[TOK_BEATS], int c) {
#pragma HLS INLINE
    return beat_lane(row[c / CFG_I16_PER_WORD], c % CFG_I16_PER_WORD);
}

/// Channels 0..CFG_MAX_DIM-1 of a token-store row, 0 from channel C on (a whole row read:
/// every beat split into its lanes once, through 64-bit halves).
inline void tok_unpack(const word_t row[TOK_BEATS], int C, q16_t v[CFG_MAX_DIM]) {
#pragma HLS INLINE
TOK_UNPACK:
    for (int b = 0; b < TOK_BEATS; b++) {
        for (int h = 0; h < CFG_AXI_BITS / 64; h++) {
            const unsigned long long u = row[b].range(64 * h + 63, 64 * h).to_uint64();
            for (int j = 0; j < 4; j++) {
                const int c = b * CFG_I16_PER_WORD + 4 * h + j;
                v[c] = c < C ? q16_t(short(u >> (16 * j))) : q16_t(0);
            }
        }
    }
}

/// A row of CFG_MAX_DIM int16 values as TOK_BEATS beats (for whole-row writes).
inline void tok_pack(const q16_t v[CFG_MAX_DIM], word_t row[TOK_BEATS]) {
#pragma HLS INLINE
TOK_PACK:
    for (int b = 0; b < TOK_BEATS; b++)
        for (int j = 0; j < CFG_I16_PER_WORD; j++)
            row[b].range(16 * j + 15, 16 * j) = ap_uint<16>(v[b * CFG_I16_PER_WORD + j]);
}

// A 48-bit accumulator row: value c at bits [48 c, 48 c + 48) of the row's beats (low beat
// first), so ACC_GROUP values fill ACC_WORDS beats exactly. A group is handled as 64-bit words
// (constant bit selects in hardware, native integers in C-sim).
static const int ACC_GROUP = CFG_I16_PER_WORD;  // values per group of ACC_WORDS beats
static const int ACC_U64 = ACC_WORDS * CFG_AXI_BITS / 64;
static_assert(ACC_CH % ACC_GROUP == 0 && CFG_AXI_BITS % 64 == 0 && CFG_ACC_BITS <= 64, "accumulator groups tile a row");
typedef unsigned long long acc_u64_t;

/// Values ACC_GROUP g .. ACC_GROUP g + ACC_GROUP - 1 of an accumulator row.
inline void acc_group_unpack(const word_t row[TOK_BEATS], int g, acc_t v[ACC_GROUP]) {
#pragma HLS INLINE
    acc_u64_t w[ACC_U64 + 1];
    for (int b = 0; b < ACC_WORDS; b++)
        for (int h = 0; h < CFG_AXI_BITS / 64; h++)
            w[b * (CFG_AXI_BITS / 64) + h] = row[ACC_WORDS * g + b].range(64 * h + 63, 64 * h).to_uint64();
    w[ACC_U64] = 0;
    for (int k = 0; k < ACC_GROUP; k++) {
        const int bit = CFG_ACC_BITS * k, i = bit / 64, off = bit % 64;
        acc_u64_t u = w[i] >> off;
        if (off + CFG_ACC_BITS > 64) u |= w[i + 1] << (64 - off);
        const long long s = (long long)(u << (64 - CFG_ACC_BITS)) >> (64 - CFG_ACC_BITS);  // sign-extend
        v[k] = acc_t(s);
    }
}

/// The inverse of acc_group_unpack.
inline void acc_group_pack(const acc_t v[ACC_GROUP], word_t row[TOK_BEATS], int g) {
#pragma HLS INLINE
    acc_u64_t w[ACC_U64 + 1];
    for (int i = 0; i <= ACC_U64; i++) w[i] = 0;
    const acc_u64_t mask = (~0ull) >> (64 - CFG_ACC_BITS);
    for (int k = 0; k < ACC_GROUP; k++) {
        const int bit = CFG_ACC_BITS * k, i = bit / 64, off = bit % 64;
        const acc_u64_t u = acc_u64_t(v[k].to_int64()) & mask;
        w[i] |= u << off;
        if (off + CFG_ACC_BITS > 64) w[i + 1] |= u >> (64 - off);
    }
    for (int b = 0; b < ACC_WORDS; b++)
        for (int h = 0; h < CFG_AXI_BITS / 64; h++)
            row[ACC_WORDS * g + b].range(64 * h + 63, 64 * h) = w[b * (CFG_AXI_BITS / 64) + h];
}

#endif
