// The engine's ABI: opcodes, the descriptor layout, flags and status codes.
//
// The host (host/trilevel_host/engine/) packs descriptors with these numbers, read from the
// generated abi.json; if the descriptor bytes are equal, the C-sim and the board run the
// same program. Every #define here is one integer on one line (the generator parses them).
//
// A descriptor is DESC_WORDS little-endian 32-bit words. All addresses are byte offsets into
// the engine's memory arena (the m_axi base registers point at its start); tensors start on
// a 16-byte boundary and their row strides (in elements) make every row start on one too.
// Shifts are signed: s > 0 is a right shift rounded half up, s <= 0 an exact left shift.
#ifndef TRILEVEL_ABI_H
#define TRILEVEL_ABI_H

#define ABI_VERSION 1
#define DESC_WORDS 32
#define DESC_BYTES 128

// ---- descriptor words (index into the 32 words)
#define DW_OP 0        // bits 7:0 opcode, bits 15:8 flags
#define DW_X 1         // main input
#define DW_W 2         // weight / second operand / gamma
#define DW_B 3         // bias / beta
#define DW_Y 4         // output
#define DW_AUX0 5      // op-specific address (connection lists, index lists, ...)
#define DW_AUX1 6      // op-specific address
#define DW_AUX2 7      // op-specific address
#define DW_AUX3 8      // op-specific address
#define DW_M 9         // rows (tokens)
#define DW_N 10        // columns / output features
#define DW_K 11        // reduction length / row width
#define DW_XS 12       // row stride of DW_X (elements)
#define DW_WS 13       // row stride of DW_W (elements)
#define DW_YS 14       // row stride of DW_Y (elements)
#define DW_AS 15       // row stride of DW_AUX0 (elements)
#define DW_SH0 16      // signed shift 0
#define DW_SH1 17      // signed shift 1
#define DW_SH2 18      // signed shift 2
#define DW_P0 19       // op-specific small integer
#define DW_P1 20       // op-specific small integer
#define DW_P2 21       // op-specific small integer
#define DW_P3 22       // op-specific small integer
#define DW_E0 23       // low 32 bits of a 64-bit constant (LayerNorm eps)
#define DW_E1 24       // high 32 bits
#define DW_TAG 25      // host's op number, echoed in the error registers

// ---- opcodes (forward)
#define OP_NOP 0
#define OP_LOAD_LUT 1     // P0 table id, N knots, X int32 knots
#define OP_LINEAR 2       // Y[M,N] = requant(X[M,K] W[N,K]^T + (B >> SH0), SH1)
#define OP_PATCHIFY 3     // X image (P0 cin, P1 size, P2 patch) -> Y (patches, cin*p*p)
#define OP_ADD 4          // Y[M,N] = requant((X << -SH0) + (W << -SH1), SH2)
#define OP_LAYERNORM 5    // Y[M,K] = layernorm(X) gamma W, beta B; SH0 beta, SH1 out; E eps
#define OP_GELU 6         // Y[M,N] = gelu(X); SH0 to table input, SH1 table to out, SH2 pass
#define OP_ATTENTION 7    // see hls/README.md: X qkv, Y ctx, AUX0 connections, AUX1 score map
#define OP_SELECT 8       // TA-Selector: X score map -> Y keep idx, AUX0 connections, AUX1/2 origin
#define OP_GATHER 9       // Y rows = X[prefix rows] + X[prefix + idx[i]] (AUX0 idx)

// ---- opcodes (backward and update); gradient formats live in the format table (hls/README.md)
#define OP_CE_GRAD 16         // Y = softmax(X logits) - onehot(AUX0 labels), at f = 15
#define OP_LINEAR_BWD_DX 17   // Y dx[M,K] = X dy[M,N] W[N,K]
#define OP_LINEAR_BWD_DW 18   // Y dw[N,K] = W dy[M,N]^T X x[M,K]; B db[N] = sum dy if flag BIAS
#define OP_LAYERNORM_BWD 19   // Y dx, AUX2 dgamma, B dbeta from X dy and the forward's cache
#define OP_GELU_BWD 20        // Y = X dy * gelu'(W x)
#define OP_ATTENTION_BWD 21   // Y dqkv from W dctx, X qkv and the stored probabilities AUX2
#define OP_GRAD_ADD 22        // Y = X + W, two gradients of one tensor (residual fork)
#define OP_SCATTER 23         // backward of OP_GATHER: Y rows at prefix + idx = X rows, others 0
#define OP_GRAD_REQUANT 24    // Y = X in its own dynamic format (embedding gradients)
#define OP_SGD 25             // AUX0 master -= lr X g; Y w = round(master) (SGD on int32 masters)

// ---- flags (bits 15:8 of DW_OP)
#define FLAG_BIAS 1       // OP_LINEAR: add the bias B
#define FLAG_SPARSE 2     // OP_ATTENTION: patch rows attend over the lists at AUX0
#define FLAG_MAP 4        // OP_ATTENTION: write the head-summed wide probabilities to AUX1
#define FLAG_ORIGIN 8     // OP_SELECT: compose origin indices from AUX1 (else identity)
#define FLAG_CACHE 16     // OP_LAYERNORM: also write what the backward needs (AUX0 n, AUX1 r and sh)
#define FLAG_PROBS 32     // OP_ATTENTION: also write the stored probabilities for the backward (AUX2)

// ---- lookup tables (OP_LOAD_LUT P0)
#define LUT_EXP 0
#define LUT_GELU 1
#define LUT_GELU_GRAD 2
#define LUT_RECIP 3
#define LUT_RSQRT 4
#define LUT_COUNT 5

// ---- status register: 0 before a run, ST_DONE after every descriptor ran, else the error
#define ST_IDLE 0
#define ST_DONE 1
#define ST_BAD_OPCODE 2
#define ST_BAD_SIZE 3         // a size is zero or over its configured maximum
#define ST_BAD_ADDRESS 4      // a tensor reaches outside the arena, or is misaligned
#define ST_BAD_INDEX 5        // an index list holds an index out of range
#define ST_BAD_PARAM 6        // a shift, table id or other parameter out of range
#define ST_BAD_PROGRAM 7      // descriptor list itself outside the arena or too long

// ---- limits the host must respect
#define ABI_MAX_SHIFT 62      // |shift| above this is ST_BAD_PARAM

// ---- gradient formats (backward ops; reference fixedpoint.dynamic_frac, model.sgd_update)
#define ABI_FRAC_MIN (-16)        // every format (frac_bits) a backward op reads or writes
#define ABI_FRAC_MAX 40           // ... lies in [ABI_FRAC_MIN, ABI_FRAC_MAX]; m = 0 gives FRAC_MAX
#define ABI_FMT_SLOTS 256         // int32 slots of the format table (AUX3); P3 names 8-bit slots
#define ABI_GRAD_MAX_ALIGN 40     // OP_GRAD_ADD aligns two gradients at most this many bits apart
#define ABI_PROB_FRAC 15          // stored probabilities and the loss gradient
#define ABI_NORM_FRAC 14          // LayerNorm's cached normalised value n
#define ABI_LN_EXTRA_FRAC 8       // LayerNorm works on x with this many more fractional bits
#define ABI_LR_FRAC 24            // OP_SGD learning rate lr_q = round(lr 2^24) in E0/E1
#define ABI_MASTER_EXTRA_FRAC 16  // OP_SGD master copy: int32 at frac_bits + 16

#endif
