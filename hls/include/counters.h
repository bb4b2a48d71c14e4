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
