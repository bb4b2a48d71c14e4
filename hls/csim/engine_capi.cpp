// C ABI of the engine for the host's C-sim backend (ctypes): the arguments of the
// synthesized top, with the arena as a host byte buffer.
//
// The arena is copied into an array of 128-bit beats (ap_uint<128> is not guaranteed to
// have the layout of 16 plain bytes), the top runs on it, and it is copied back, so the
// host sees exactly what the board's DDR would hold afterwards.
#include <stdint.h>
#include <string.h>

#include <vector>

#include "counters.h"
#include "engine.h"

static void bytes_to_words(const uint8_t* src, size_t n_words, std::vector<word_t>& dst) {
    dst.resize(n_words);
    // a beat is two little-endian 64-bit halves (the arena and the host are little-endian, as
    // the ZCU102's Cortex-A53 is): two assignments per beat instead of sixteen
    for (size_t i = 0; i < n_words; i++) {
        word_t w = 0;
        for (int h = 0; h < CFG_AXI_BYTES / 8; h++) {
            uint64_t v;
            memcpy(&v, src + i * CFG_AXI_BYTES + 8 * h, 8);
            w.range(64 * h + 63, 64 * h) = v;
        }
        dst[i] = w;
    }
}

static void words_to_bytes(const std::vector<word_t>& src, uint8_t* dst) {
    for (size_t i = 0; i < src.size(); i++)
        for (int h = 0; h < CFG_AXI_BYTES / 8; h++) {
            uint64_t v = src[i].range(64 * h + 63, 64 * h).to_uint64();
            memcpy(dst + i * CFG_AXI_BYTES + 8 * h, &v, 8);
        }
}

extern "C" {

int trilevel_abi_version(void) { return ABI_VERSION; }

int trilevel_counter_slots(void) { return CNT_COUNT; }

/// Runs one start of the engine on `arena` (arena_bytes, a multiple of 16, below 4 GiB).
/// Returns 0 when the call itself was valid (status and err_tag then say how the run went),
/// -1 for an arena the top could not be given.
int trilevel_run(uint8_t* arena, uint64_t arena_bytes, uint32_t prog, uint32_t n_desc, uint32_t* status,
                 uint32_t* err_tag) {
    if (arena == 0 || arena_bytes == 0 || arena_bytes % CFG_AXI_BYTES != 0 || arena_bytes > 0xFFFFFFFFull) return -1;
    std::vector<word_t> mem;
    bytes_to_words(arena, arena_bytes / CFG_AXI_BYTES, mem);
    ap_uint<32> st = 0, tag = 0;
    trilevel_engine(mem.data(), mem.data(), ap_uint<32>(arena_bytes), prog, n_desc, st, tag);
    words_to_bytes(mem, arena);
    *status = uint32_t(st);
    *err_tag = uint32_t(tag);
    return 0;
}

/// Copies the loop counters (n <= CNT_COUNT slots each) accumulated since the last reset.
void trilevel_counters(uint64_t* iters, uint64_t* entries, int n) {
    for (int i = 0; i < n && i < CNT_COUNT; i++) {
        iters[i] = g_sim_counters.iters[i];
        entries[i] = g_sim_counters.entries[i];
    }
}

void trilevel_counters_reset(void) { memset(&g_sim_counters, 0, sizeof(g_sim_counters)); }
}
