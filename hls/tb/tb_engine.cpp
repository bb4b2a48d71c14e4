// Self-checking testbench of the engine's top, trilevel_engine (also what Vitis HLS C
// simulation and C/RTL co-simulation run, see tcl/hls.tcl).
//
//     tb_engine VECTOR_DIR [VECTOR_DIR ...]
//
// Each directory holds a test vector written by host/trilevel_host/engine/tb_vectors.py:
// vector.txt (program offset and length, accepted status codes, expected error tag, expected
// regions), arena.bin (the arena before the run) and expect_<i>.bin (the bytes region i must
// hold afterwards). The testbench runs the top once per vector on a copy of the arena,
// compares, and prints one line per vector. Exit status: 0 when every vector passes, 1 on
// any mismatch, 2 when a vector cannot be read.
#include <stdint.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "engine.h"

namespace {

struct Region {
    uint64_t offset;
    std::vector<uint8_t> bytes;
};

struct TestVector {
    std::string name;
    std::vector<uint8_t> arena;
    uint32_t prog = 0;
    uint32_t n_desc = 0;
    std::vector<uint32_t> statuses;
    uint32_t err_tag = 0;
    std::vector<Region> regions;
};

bool read_bytes(const std::string& path, std::vector<uint8_t>& out) {
    std::ifstream f(path.c_str(), std::ios::binary);
    if (!f) return false;
    out.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    return true;
}

bool parse_u32(const std::string& word, uint32_t& v) {
    char* end = 0;
    unsigned long long x = strtoull(word.c_str(), &end, 10);
    if (word.empty() || *end != '\0' || x > 0xFFFFFFFFull) return false;
    v = uint32_t(x);
    return true;
}

/// Reads dir/vector.txt and the files it names; on failure `err` says what is wrong.
bool load_vector(const std::string& dir, TestVector& v, std::string& err) {
    std::ifstream f((dir + "/vector.txt").c_str());
    if (!f) {
        err = "cannot read " + dir + "/vector.txt";
        return false;
    }
    bool have_prog = false, have_n = false;
    std::string line;
    while (std::getline(f, line)) {
        std::istringstream in(line);
        std::string key;
        if (!(in >> key) || key[0] == '#') continue;
        if (key == "name") {
            in >> v.name;
        } else if (key == "prog" || key == "n_desc" || key == "err_tag") {
            std::string w;
            uint32_t x;
            if (!(in >> w) || !parse_u32(w, x)) {
                err = "bad value for " + key;
                return false;
            }
            if (key == "prog") {
                v.prog = x;
                have_prog = true;
            } else if (key == "n_desc") {
                v.n_desc = x;
                have_n = true;
            } else {
                v.err_tag = x;
            }
        } else if (key == "status") {
            std::string w;
            uint32_t x;
            while (in >> w) {
                if (!parse_u32(w, x)) {
                    err = "bad status code " + w;
                    return false;
                }
                v.statuses.push_back(x);
            }
        } else if (key == "expect") {
            std::string off_w, len_w, file;
            uint32_t off, len;
            if (!(in >> off_w >> len_w >> file) || !parse_u32(off_w, off) || !parse_u32(len_w, len)) {
                err = "bad expect line: " + line;
                return false;
            }
            Region r;
            r.offset = off;
            if (!read_bytes(dir + "/" + file, r.bytes) || r.bytes.size() != len) {
                err = "cannot read " + len_w + " bytes from " + dir + "/" + file;
                return false;
            }
            v.regions.push_back(r);
        } else {
            err = "unknown key " + key;
            return false;
        }
    }
    if (!have_prog || !have_n || v.statuses.empty()) {
        err = "vector.txt needs prog, n_desc and status";
        return false;
    }
    if (!read_bytes(dir + "/arena.bin", v.arena) || v.arena.empty() || v.arena.size() % CFG_AXI_BYTES != 0 ||
        v.arena.size() > 0xFFFFFFFFull) {
        err = "arena.bin is missing or not a whole number of AXI beats below 4 GiB";
        return false;
    }
    for (size_t i = 0; i < v.regions.size(); i++) {
        if (v.regions[i].offset + v.regions[i].bytes.size() > v.arena.size()) {
            err = "an expected region lies outside the arena";
            return false;
        }
    }
    if (v.name.empty()) v.name = dir;
    return true;
}

// C/RTL co-simulation copies `depth` beats of each m_axi argument in and out (the INTERFACE
// pragmas of src/engine.cpp say 65536), so the testbench's buffer is never shorter than
// that; the top is still told the vector's arena size (mem_bytes), which is what it checks.
const size_t kCosimDepthBeats = 65536;

// The top sees the arena as AXI beats, as the m_axi ports do: little-endian, byte 0 in bits
// 7:0. Beats are moved 64 bits at a time (a byte at a time is slow with ap_uint).
static_assert(CFG_AXI_BYTES % 8 == 0, "the AXI beat is a whole number of 64-bit words");

void bytes_to_beats(const std::vector<uint8_t>& bytes, std::vector<word_t>& beats) {
    const size_t n = bytes.size() / CFG_AXI_BYTES;
#ifdef TB_EXACT_ARENA
    beats.assign(n, word_t(0));  // sanitizer builds: any access past the arena is a report
#else
    beats.assign(n > kCosimDepthBeats ? n : kCosimDepthBeats, word_t(0));
#endif
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < CFG_AXI_BYTES / 8; c++) {
            uint64_t x = 0;
            for (int b = 7; b >= 0; b--) x = (x << 8) | bytes[i * CFG_AXI_BYTES + 8 * c + b];
            beats[i].range(64 * c + 63, 64 * c) = x;
        }
}

void beats_to_bytes(const std::vector<word_t>& beats, size_t n_bytes, std::vector<uint8_t>& bytes) {
    bytes.resize(n_bytes);
    for (size_t i = 0; i < n_bytes / CFG_AXI_BYTES; i++)
        for (int c = 0; c < CFG_AXI_BYTES / 8; c++) {
            uint64_t x = beats[i].range(64 * c + 63, 64 * c).to_uint64();
            for (int b = 0; b < 8; b++) bytes[i * CFG_AXI_BYTES + 8 * c + b] = uint8_t(x >> (8 * b));
        }
}

/// Runs the top on a copy of the vector's arena; returns the one-line verdict.
bool run_vector(const TestVector& v, std::string& verdict) {
    std::vector<word_t> mem;
    bytes_to_beats(v.arena, mem);

    ap_uint<32> status = 0, err_tag = 0;
    trilevel_engine(mem.data(), mem.data(), ap_uint<32>(v.arena.size()), v.prog, v.n_desc, status, err_tag);

    char buf[512];
    bool status_ok = false;
    for (size_t i = 0; i < v.statuses.size(); i++) status_ok |= uint32_t(status) == v.statuses[i];
    if (!status_ok || uint32_t(err_tag) != v.err_tag) {
        std::string want;
        for (size_t i = 0; i < v.statuses.size(); i++) want += (i ? " or " : "") + std::to_string(v.statuses[i]);
        snprintf(buf, sizeof buf, "FAIL %s: status %u err_tag %u, expected status %s err_tag %u", v.name.c_str(),
                 unsigned(status), unsigned(err_tag), want.c_str(), unsigned(v.err_tag));
        verdict = buf;
        return false;
    }
    for (size_t i = v.arena.size() / CFG_AXI_BYTES; i < mem.size(); i++) {
        if (mem[i] != 0) {
            snprintf(buf, sizeof buf, "FAIL %s: the top wrote past the arena end (beat %zu)", v.name.c_str(), i);
            verdict = buf;
            return false;
        }
    }
    std::vector<uint8_t> after;
    beats_to_bytes(mem, v.arena.size(), after);
    uint64_t checked = 0;
    for (size_t r = 0; r < v.regions.size(); r++) {
        const Region& reg = v.regions[r];
        for (size_t k = 0; k < reg.bytes.size(); k++) {
            uint64_t a = reg.offset + k;
            uint8_t got = after[a];
            if (got != reg.bytes[k]) {
                snprintf(buf, sizeof buf,
                         "FAIL %s: region %zu (offset %llu, %zu bytes) differs first at byte %llu: 0x%02x, expected "
                         "0x%02x",
                         v.name.c_str(), r, (unsigned long long)reg.offset, reg.bytes.size(), (unsigned long long)a,
                         unsigned(got), unsigned(reg.bytes[k]));
                verdict = buf;
                return false;
            }
        }
        checked += reg.bytes.size();
    }
    snprintf(buf, sizeof buf, "PASS %s: status %u err_tag %u, %zu regions (%llu bytes) match", v.name.c_str(),
             unsigned(status), unsigned(err_tag), v.regions.size(), (unsigned long long)checked);
    verdict = buf;
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s VECTOR_DIR [VECTOR_DIR ...]\n", argv[0]);
        return 2;
    }
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        TestVector v;
        std::string err;
        if (!load_vector(argv[i], v, err)) {
            fprintf(stderr, "error: %s: %s\n", argv[i], err.c_str());
            return 2;
        }
        std::string verdict;
        if (!run_vector(v, verdict)) rc = 1;
        printf("%s\n", verdict.c_str());
    }
    return rc;
}
