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
