// The one configuration of the engine: sizes, array shapes and port width.
//
// Every buffer size, loop bound and pragma factor in hls/ comes from here; nothing else in
// the kernels is a literal size. host/trilevel_host/engine/abi.json is generated from this
// file and abi.h (hls/tools/gen_abi_json.py; a test checks it is current), so the host
// program, the cycle model and the resource estimate read the same numbers.
//
// The maxima cover DeiT-S/16 at 224x224 (the largest model in the paper's Table 3), so one
// bitstream runs DeiT-T, DeiT-S and every smaller model; run-time sizes come from the
// descriptors and are checked against these maxima.
#ifndef TRILEVEL_CONFIG_H
#define TRILEVEL_CONFIG_H

// ---- model maxima (DeiT-S/16, 224x224, 1000 classes)
#define CFG_MAX_TOKENS 197     // [CLS] + 14*14 patches
#define CFG_MAX_DIM 384        // embedding width C
#define CFG_MAX_HEADS 6
#define CFG_MAX_HEAD_DIM 64    // power of 4: the attention scale is a shift
#define CFG_MAX_HIDDEN 1536    // MLP hidden width
#define CFG_MAX_K 1536         // longest dot product (fc2); patch embedding K = 3*16*16 = 768
#define CFG_MAX_OUT 1536       // widest linear output (fc1: 1536, qkv: 3*384 = 1152, head: 1000)
#define CFG_MAX_IMG 224
#define CFG_MAX_CIN 3
#define CFG_MAX_PATCH 16
#define CFG_MAX_PREFIX 1       // [CLS]

// ---- matrix core: an output-stationary MC_ROWS x MC_COLS array of 16x16-bit MACs with
// 48-bit accumulators, K streamed one step per cycle. 28 x 64 = 1792 DSP48E2: the one
// multiplier array of every matmul (mac_array.h). 32 rows (2048 DSPs) do not fit the ZU9EG
// beside the forward and backward vector units (bench/hls_resources.py: 97% of the DSPs);
// 28 still holds the attention's 4 keys x 384 channels and costs DeiT at 197 tokens one
// row tile more (8 of 28 instead of 7 of 32: hls/README.md, "Resource budget").
#define CFG_MC_ROWS 28         // token rows of one output tile
#define CFG_MC_COLS 64         // output features of one output tile

// ---- attention row engine: one query row at a time, all heads in parallel over the C
// channels, ATTN_KEYS keys per cycle (K and V replicated ATTN_KEYS/2 times on chip, since
// a dual-port BRAM serves two key rows per cycle).
#define CFG_ATTN_KEYS 4

// ---- vector unit
#define CFG_VU_LANES 16        // elements per cycle in LayerNorm, GELU, add, requantisation
#define CFG_SEL_LANES 32       // comparators per cycle in the TA-Selector's rank counting

// ---- memory system
#define CFG_AXI_BITS 128       // m_axi data width (ZCU102 HP ports at 150 MHz)
#define CFG_CLOCK_MHZ 150
#define CFG_MAX_DESCRIPTORS 4096
#define CFG_ACC_BITS 48        // DSP48E2 accumulator width

// ---- derived (do not edit)
#define CFG_AXI_BYTES (CFG_AXI_BITS / 8)
#define CFG_I16_PER_WORD (CFG_AXI_BITS / 16)
#define CFG_I32_PER_WORD (CFG_AXI_BITS / 32)

#endif
