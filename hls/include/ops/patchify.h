// OP_PATCHIFY: image -> patch rows, each in (cin, kh, kw) order (reference ops_forward.patchify).
//
// The patch embedding's input layout: Y row pr * G + pc (G = size / p patches per side) holds
// patch (pr, pc) as [cin][kh][kw], the conv weight's order, so the embedding is a LINEAR.
// One band of patches at a time: the cin * p image rows of patch row pr are read into a band
// buffer of beats (long bursts), then the G patch rows are written from it. When p is a
// multiple of 8 every (cin, kh) segment of a patch is whole beats, so a patch row is copied
// one beat per cycle; otherwise (small images, p = 4 or 7) one value per cycle.
#ifndef TRILEVEL_OPS_PATCHIFY_H
#define TRILEVEL_OPS_PATCHIFY_H

#include "../desc.h"
#include "../memory.h"

static const int PATCH_IMG_WORDS = (CFG_MAX_IMG + CFG_I16_PER_WORD - 1) / CFG_I16_PER_WORD;  // beats per image row
static const int PATCH_BAND_ROWS = CFG_MAX_CIN * CFG_MAX_PATCH;                              // image rows per band
static const int PATCH_MAX_LEN = CFG_MAX_CIN * CFG_MAX_PATCH * CFG_MAX_PATCH;                // values per patch

/// Largest G with G * G <= CFG_MAX_TOKENS (patches per side), for the trip counts.
constexpr int patch_max_grid() {
    int g = 0;
    while ((g + 1) * (g + 1) <= CFG_MAX_TOKENS) g++;
    return g;
}
static const int PATCH_MAX_GRID = patch_max_grid();

/// X: the image, P0 (cin) x P1 (size) rows of P1 int16 pixels, row stride XS (row c * size + h
/// is channel c, image row h). Y: (G * G, cin p p) int16 rows, stride YS, G = size / p.
/// P2 = p must divide size; cin <= CFG_MAX_CIN, size <= CFG_MAX_IMG, p <= CFG_MAX_PATCH,
/// G * G <= CFG_MAX_TOKENS, cin p p <= CFG_MAX_K. Values are copied unchanged (same format).
inline ap_uint<32> op_patchify(word_t* mem, ap_uint<32> mem_bytes, const Desc& d) {
    const ap_uint<32> cin_u = d.u(DW_P0), size_u = d.u(DW_P1), p_u = d.u(DW_P2);
    if (cin_u == 0 || cin_u > CFG_MAX_CIN || size_u == 0 || size_u > CFG_MAX_IMG || p_u == 0 || p_u > CFG_MAX_PATCH)
        return ST_BAD_SIZE;
    const int cin = int(cin_u), size = int(size_u), p = int(p_u);
    if (size % p != 0) return ST_BAD_PARAM;
    const int grid = size / p, len = cin * p * p;
    if (grid * grid > CFG_MAX_TOKENS || len > CFG_MAX_K) return ST_BAD_SIZE;
    if (!tensor_ok(d.u(DW_X), cin * size, d.u(DW_XS), size, 2, mem_bytes) ||
        !tensor_ok(d.u(DW_Y), grid * grid, d.u(DW_YS), len, 2, mem_bytes))
        return ST_BAD_ADDRESS;
    const addr_t x_addr = d.u(DW_X), y_addr = d.u(DW_Y);
    const addr_t xs = d.u(DW_XS), ys = d.u(DW_YS);
    const int img_words = (size + CFG_I16_PER_WORD - 1) / CFG_I16_PER_WORD;
    const bool whole_beats = p % CFG_I16_PER_WORD == 0;
    const int seg_words = p / CFG_I16_PER_WORD;  // beats per (cin, kh) segment when whole_beats

    word_t band[PATCH_BAND_ROWS][PATCH_IMG_WORDS];  // band row c * p + kh: image row c * size + pr * p + kh
    q16_t out[PATCH_MAX_LEN];
#pragma HLS ARRAY_PARTITION variable = out cyclic factor = CFG_I16_PER_WORD

PATCH_BAND_ROWS_LOOP:
    for (int pr = 0; pr < grid; pr++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = PATCH_MAX_GRID
    PATCH_LOAD_ROWS:
        for (int c = 0, kh = 0, r = 0; r < cin * p; r++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = PATCH_BAND_ROWS
            const addr_t src = x_addr / CFG_AXI_BYTES + addr_t(c * size + pr * p + kh) * xs / CFG_I16_PER_WORD;
            // II=1: one gmem_a beat read (a burst along the image row), one band write.
            // One iteration: one beat of one image row.
            SIM_LOOP(CNT_PATCH_BAND, img_words);
        PATCH_BAND:
            for (int b = 0; b < img_words; b++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = PATCH_IMG_WORDS
                band[r][b] = mem[src + b];
            }
            if (++kh == p) {
                kh = 0;
                c++;
            }
        }
    PATCH_COLS:
        for (int pc = 0; pc < grid; pc++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = PATCH_MAX_GRID
            const addr_t dst = y_addr + addr_t(pr * grid + pc) * ys * 2;
            if (whole_beats) {
                // II=1: one band read and one gmem_a beat write per cycle; the (row, beat)
                // position advances by counters (no divider). One iteration: one patch beat.
                SIM_LOOP(CNT_PATCH_WORDS, len / CFG_I16_PER_WORD);
            PATCH_WORDS:
                for (int t = 0, r = 0, s = 0; t < len / CFG_I16_PER_WORD; t++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = PATCH_MAX_LEN / CFG_I16_PER_WORD
                    mem[dst / CFG_AXI_BYTES + t] = band[r][pc * seg_words + s];
                    if (++s == seg_words) {
                        s = 0;
                        r++;
                    }
                }
            } else {
                // II=1: one band read (lane picked by a mux) and one write into out per cycle;
                // counters instead of dividers. One iteration: one patch value.
                SIM_LOOP(CNT_PATCH_PIXELS, len);
            PATCH_PIXELS:
                for (int e = 0, r = 0, kw = 0; e < len; e++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = PATCH_MAX_LEN
                    const int col = pc * p + kw, lane = col % CFG_I16_PER_WORD;
                    out[e] = q16_t(band[r][col / CFG_I16_PER_WORD].range(16 * lane + 15, 16 * lane));
                    if (++kw == p) {
                        kw = 0;
                        r++;
                    }
                }
                store_i16<PATCH_MAX_LEN>(mem, dst, len, out);
            }
        }
    }
    return ST_DONE;
}

#endif
