// Loop-iteration counters, in C-sim builds only: the cycle model's trip counts are checked
// against them (host/trilevel_host/engine/cycle_model.py mirrors each counted loop).
//
// SIM_LOOP(id, trips) is placed just before a pipelined loop: it adds the loop's trip count
// to iters[id] and 1 to entries[id] (each entry pays the pipeline depth once). Under
// __SYNTHESIS__ it expands to nothing. Ids: 0-7 memory, 8-39 forward ops, 40-95 backward.
#ifndef TRILEVEL_COUNTERS_H
#define TRILEVEL_COUNTERS_H

#define CNT_MEM_READ 0      // m_axi beats read by load_i16/load_i32
#define CNT_MEM_WRITE 1     // m_axi beats written by store_i16/store_i32
#define CNT_DESC_READ 2     // descriptors fetched
// forward: linear, patchify, add, layernorm, gelu (8-23)
#define CNT_LIN_LOAD_X 8    // LINEAR: X beats copied on chip (one per row beat)
#define CNT_LIN_LOAD_W 9    // LINEAR: weight beats streamed from wmem (one per row beat of W)
#define CNT_LIN_MAC 10      // LINEAR: K steps of the MAC array (one per output tile and k)
#define CNT_LIN_REQUANT 11  // LINEAR: requantisation, CFG_VU_LANES outputs of one row per iteration
#define CNT_PATCH_BAND 12   // PATCHIFY: image beats read into the band buffer
#define CNT_PATCH_WORDS 13  // PATCHIFY (P2 a multiple of 8): patch beats written, one per iteration
#define CNT_PATCH_PIXELS 14 // PATCHIFY (other P2): patch values gathered, one per iteration
#define CNT_ADD 15          // ADD: CFG_VU_LANES sums per iteration
#define CNT_LN_SUM 16       // LAYERNORM: CFG_VU_LANES values summed per iteration
#define CNT_LN_VAR 17       // LAYERNORM: CFG_VU_LANES squared deviations summed per iteration
#define CNT_LN_NORM 18      // LAYERNORM: CFG_VU_LANES normalised outputs per iteration
#define CNT_GELU_TABLE 19   // GELU: table knots copied into the lane replicas, one per iteration
#define CNT_GELU 20         // GELU: CFG_VU_LANES outputs per iteration
#define CNT_ATTN_V_LOAD 21  // ATTENTION with C <= 2: V rows written after the K|V load (one token per iteration)
// OP_ATTENTION (ops/attention.h): per op, per query row
#define CNT_ATTN_EXP_COPY 24     // exp knots copied on chip (per op)
#define CNT_ATTN_KV_LOAD 25      // qkv beats read into the K/V copies (per op)
#define CNT_ATTN_KEYS 26         // connection indices checked (per listed row)
#define CNT_ATTN_QK 27           // key groups scored (per row)
#define CNT_ATTN_EXP 28          // key groups through the exp tables (per row)
#define CNT_ATTN_RECIP 29        // heads through the recip table (per row)
#define CNT_ATTN_PV 30           // key groups of p v (per row)
#define CNT_ATTN_MAP_SCATTER 31  // list positions scattered into the MAP row (per row)
#define CNT_ATTN_MAP_STORE 32    // MAP beats written (per row)
#define CNT_ATTN_PROBS_STORE 33  // PROBS beats written (per row)
// OP_SELECT (ops/select.h) and OP_GATHER (ops/gather.h)
#define CNT_SEL_RANK 34          // rank-counting steps of CFG_SEL_LANES comparisons (per top-k)
#define CNT_SEL_EMIT 35          // candidates scanned for the ascending output (per top-k)
#define CNT_SEL_GATHER 36        // scores gathered from a map row (per top-k)
#define CNT_SEL_ORIGIN 37        // origin indices composed (per op)
#define CNT_GATHER_CHECK 38      // gather indices checked (per op)
#define CNT_GATHER_COPY 39       // beats copied (per op)
// backward ops (40-95): a loop of a two-pass op (grad_format.h) counts its max pass(es) under
// the _MAXP id and its write pass under the plain one, so the cost of choosing the gradient
// formats at run time reads straight off the counters
#define CNT_CE_LABELS 40    // loss: labels checked
#define CNT_CE_MAX 41       // loss: logits scanned for the row maximum
#define CNT_CE_EXP 42       // loss: exp table lookups and the row sum
#define CNT_CE_OUT 43       // loss: probabilities minus one-hot
#define CNT_LBX_MAC 44      // linear dx: reduction steps of one tile (write pass)
#define CNT_LBX_MAC_MAXP 45 // linear dx: the same in the max pass
#define CNT_LBX_DRAIN 46    // linear dx: tile rows drained (write pass)
#define CNT_LBX_DRAIN_MAXP 47
#define CNT_LBW_MAC 48      // linear dW: tokens streamed through one tile (write pass)
#define CNT_LBW_MAC_MAXP 49
#define CNT_LBW_DRAIN 50    // linear dW: tile rows drained (write pass)
#define CNT_LBW_DRAIN_MAXP 51
#define CNT_LBW_DB 52       // linear db: tokens summed per MC_ROWS features
#define CNT_LBW_DB_OUT 53   // linear db: elements written
#define CNT_LNB_SUM 54      // layernorm bwd: lane groups of the row sums (write pass)
#define CNT_LNB_SUM_MAXP 55
#define CNT_LNB_DX 56       // layernorm bwd: lane groups of dx (write pass)
#define CNT_LNB_DX_MAXP 57
#define CNT_LNB_PARAM_MAX 58  // layernorm bwd: lane groups of the dgamma / dbeta maxima
#define CNT_LNB_PARAM_OUT 59  // layernorm bwd: lane groups of dgamma / dbeta written
#define CNT_GB_ELEMS 60     // gelu bwd: lane groups (write pass)
#define CNT_GB_ELEMS_MAXP 61
#define CNT_ATB_LIST_CHECK 62  // attention bwd: list entries checked
#define CNT_ATB_ZERO 63     // attention bwd: dk / dv accumulator rows cleared
#define CNT_ATB_DP_MAX 64   // attention bwd pass 0: listed keys, dP's maximum
#define CNT_ATB_DP 65       // attention bwd: listed keys, dP and rowdot (write pass)
#define CNT_ATB_DP_MAXP 66  // ... the same in passes 1-2
#define CNT_ATB_DS 67       // attention bwd: listed keys, dS and dq / dk / dv (write pass)
#define CNT_ATB_DS_MAXP 68  // ... the same in passes 1-2
#define CNT_ATB_KV_MAX 69   // attention bwd: dk / dv rows into the joint maximum
#define CNT_ATB_KV_OUT 70   // attention bwd: dk / dv rows written
#define CNT_GA_ELEMS 71     // gradient add: lane groups (write pass)
#define CNT_GA_ELEMS_MAXP 72
#define CNT_GR_ELEMS 73     // gradient requant: lane groups (write pass)
#define CNT_GR_ELEMS_MAXP 74
#define CNT_SC_CHECK 75     // scatter: indices checked
#define CNT_SC_ROWS 76      // scatter: rows written
#define CNT_SGD_ELEMS 77    // SGD: lane groups updated
#define CNT_GB_TABLE 78     // gelu bwd: gelu' knots copied into the table replicas (per op)
#define CNT_COUNT 96

#ifndef __SYNTHESIS__
struct SimCounters {
    unsigned long long iters[CNT_COUNT];
    unsigned long long entries[CNT_COUNT];
};
extern SimCounters g_sim_counters;
#define SIM_LOOP(id, trips)                                   \
    do {                                                      \
        g_sim_counters.iters[(id)] += (unsigned long long)(trips); \
        g_sim_counters.entries[(id)] += 1;                    \
    } while (0)
#else
#define SIM_LOOP(id, trips) \
    do {                    \
    } while (0)
#endif

#endif
