// One descriptor as the engine sees it, and its fetch from the arena.
#ifndef TRILEVEL_DESC_H
#define TRILEVEL_DESC_H

#include "abi.h"
#include "counters.h"
#include "fixed.h"

struct Desc {
    ap_uint<32> w[DESC_WORDS];

    ap_uint<8> opcode() const { return w[DW_OP].range(7, 0); }
    ap_uint<8> flags() const { return w[DW_OP].range(15, 8); }
    bool has(int flag) const { return (flags() & flag) != 0; }
    /// Unsigned field (addresses, sizes, strides).
    ap_uint<32> u(int i) const { return w[i]; }
    /// Signed field (shifts).
    int s(int i) const { return int(ap_int<32>(w[i])); }
    /// The 64-bit constant in DW_E0 (low) and DW_E1 (high).
    wide_t e64() const {
        ap_uint<64> v = (ap_uint<64>(w[DW_E1]) << 32) | ap_uint<64>(w[DW_E0]);
        return wide_t(v);
    }
};

/// True when every shift of the descriptor is within ABI_MAX_SHIFT.
inline bool shifts_ok(const Desc& d) {
    for (int i = DW_SH0; i <= DW_SH2; i++) {
        int s = d.s(i);
        if (s > ABI_MAX_SHIFT || s < -ABI_MAX_SHIFT) return false;
    }
    return true;
}

/// Fetches descriptor `index` of the program at byte `prog` (DESC_BYTES each, beat-aligned).
inline void fetch_desc(const word_t* mem, ap_uint<32> prog, ap_uint<32> index, Desc& d) {
    const int beats = DESC_BYTES / CFG_AXI_BYTES;
    const int per_beat = CFG_AXI_BITS / 32;
    SIM_LOOP(CNT_DESC_READ, beats);
FETCH_DESC:
    for (int b = 0; b < beats; b++) {
#pragma HLS PIPELINE II = 1
        word_t v = mem[(prog / CFG_AXI_BYTES) + index * beats + b];
        for (int j = 0; j < per_beat; j++) d.w[b * per_beat + j] = v.range(32 * j + 31, 32 * j);
    }
}

#endif
