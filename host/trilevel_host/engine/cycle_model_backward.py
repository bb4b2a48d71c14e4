"""The cycle model of the backward ops and the SGD update (hls/include/ops/*_backward.h, loss.h,
grad_add.h, grad_requant.h, scatter.h, sgd.h, grad_format.h).

Same rules as :mod:`.cycle_model`: every loop's trips and entries as the kernel computes them
from the descriptor, its II and depth in :data:`BACKWARD_LOOPS` with the kernel's reason (the
depths are assumptions). A two-pass op (grad_format.h) runs its loops once for the maximum
(the ``_MAXP`` loops and counters) and once to write. Loops the kernels leave without a pragma
are priced at one cycle per trip (below 64 trips HLS keeps them sequential, above it pipelines
them automatically at II=1) and are not counted by the C-sim.
"""

from __future__ import annotations

from .abi import abi
from .cycle_core import Desc, Loop, OpCost, ceil_div, mem_loop, register


def _pair(label: str, depth: int, why: str) -> list[Loop]:
    """A two-pass loop: its write pass (counter `label`) and its max pass (counter `label_MAXP`)."""
    return [Loop(label, label, 1, depth, why), Loop(label + "_MAXP", label + "_MAXP", 1, depth, why)]


def _lanes(label: str, why: str) -> Loop:
    """A loop without a pragma inside a non-pipelined body: one cycle per trip, not counted."""
    return Loop(label, None, 1, 1, why + " (no pragma: one cycle per trip, assumption; not counted)")


BACKWARD_LOOPS: list[Loop] = [
    # ---- the format table (grad_format.h)
    mem_loop("FMT_READ", "MEM_READ", "read", "fmt_read (one beat of the format table)"),
    mem_loop("FMT_RMW_READ", "MEM_READ", "read", "fmt_write (the read of its read-modify-write)"),
    mem_loop("FMT_RMW_WRITE", "MEM_WRITE", "write", "fmt_write (the write of its read-modify-write)"),
    Loop(
        "DYN_FRAC",
        None,
        0,
        6,
        "grad_format.h dynamic_frac between passes (leading one, a rounding shift, compare, clamp); "
        "6 cycles is an assumption",
    ),
    # ---- CE_GRAD (loss.h)
    mem_loop("CE_LOAD", "MEM_READ", "read", "op_ce_grad (labels, a logits row)"),
    Loop("CE_LABELS", "CE_LABELS", 1, 2, "loss.h: II=1, one label compared per cycle (the flag is an OR)"),
    Loop("CE_MAX", "CE_MAX", 1, 2, "loss.h: II=1, one logit per cycle, the running max one compare-select"),
    Loop(
        "CE_EXP",
        "CE_EXP",
        1,
        10,
        "loss.h: II=1, one exp-table lookup per cycle, the 64-bit running sum one adder; depth 10 "
        "(subtract, round, table read 2, interpolation multiply 3, add) is an assumption",
    ),
    Loop("CE_RECIP", None, 0, 12, "loss.h: recip of the row sum, once per row (as ATTN_RECIP's depth)"),
    Loop(
        "CE_OUT",
        "CE_OUT",
        1,
        8,
        "loss.h: II=1, independent lanes; depth 8 (e r multiply 4, two roundings, subtract)",
    ),
    mem_loop("CE_STORE", "MEM_WRITE", "write", "op_ce_grad (a dlogits row)"),
    # ---- LINEAR_BWD_DX (linear_backward.h)
    mem_loop("LBX_LOAD_DY", "MEM_READ", "read", "op_linear_bwd_dx (a dy row, once per op)"),
    mem_loop(
        "LBX_LOAD_W",
        "MEM_READ",
        "read",
        "op_linear_bwd_dx (one W row's MC_COLS-column panel, per column tile and pass: one short "
        "burst per W row; one buffer, so it does not overlap the MACs)",
    ),
    *_pair(
        "LBX_MAC",
        6,
        "linear_backward.h: II=1, one reduction step n per cycle on the MC_ROWS x MC_COLS tile (dy "
        "banks give the tile's rows, wp's columns are registers, each accumulator depends on itself "
        "one step earlier); depth 6 as the forward MC_K",
    ),
    *_pair("LBX_DRAIN", 1, "linear_backward.h LBX_DRAIN: one tile row per iteration, not pipelined"),
    _lanes(
        "LBX_DRAIN_LANES",
        "linear_backward.h: row_max (max pass) or the requantisation (write pass) over MC_COLS lanes",
    ),
    mem_loop("LBX_STORE_DX", "MEM_WRITE", "write", "op_linear_bwd_dx (a tile row of dx)"),
    # ---- LINEAR_BWD_DW
    mem_loop("LBW_LOAD_X", "MEM_READ", "read", "op_linear_bwd_dw (an x row, once per op)"),
    mem_loop(
        "LBW_LOAD_DY",
        "MEM_READ",
        "read",
        "op_linear_bwd_dw (one token's MC_ROWS-feature panel of dy, per row tile and pass: one "
        "short burst per token)",
    ),
    _lanes("LBW_DB_CLEAR", "linear_backward.h: the MC_ROWS db partial sums cleared, then written back"),
    Loop("LBW_DB", "LBW_DB", 1, 3, "linear_backward.h: II=1, one token's MC_ROWS features into 64-bit sums"),
    *_pair(
        "LBW_MAC",
        6,
        "linear_backward.h: II=1, one token per cycle on the tile (dyp's row is registers, xb's "
        "MC_COLS banks give the columns, each accumulator depends on itself); depth 6 as MC_K",
    ),
    *_pair("LBW_DRAIN", 1, "linear_backward.h LBW_DRAIN: one tile row per iteration, not pipelined"),
    _lanes("LBW_DRAIN_LANES", "linear_backward.h: row_max or the requantisation over MC_COLS lanes"),
    mem_loop("LBW_STORE_DW", "MEM_WRITE", "write", "op_linear_bwd_dw (a tile row of dW)"),
    Loop("LBW_DB_OUT", "LBW_DB_OUT", 1, 3, "linear_backward.h: II=1, one db element per cycle"),
    mem_loop("LBW_STORE_DB", "MEM_WRITE", "write", "op_linear_bwd_dw (db)"),
    # ---- LAYERNORM_BWD (layernorm_backward.h)
    mem_loop("LNB_LOAD_RS", "MEM_READ", "read", "op_layernorm_bwd ((r, sh) of a row, one beat)"),
    mem_loop("LNB_LOAD_GAMMA", "MEM_READ", "read", "op_layernorm_bwd (gamma through wmem)"),
    mem_loop("LNB_LOAD_DY", "MEM_READ", "read", "op_layernorm_bwd (a dy row, per pass)"),
    mem_loop("LNB_LOAD_N", "MEM_READ", "read", "op_layernorm_bwd (an int32 n row of the cache, per pass)"),
    *_pair(
        "LNB_SUM",
        8,
        "layernorm_backward.h: II=1, VU_LANES columns per cycle, two row sums by adder trees with "
        "one carried add each, dgamma/dbeta columns touched once per row; depth 8 (two multiplies, "
        "the tree) is an assumption",
    ),
    Loop(
        "LNB_DIV",
        None,
        0,
        76,
        "layernorm_backward.h: rdiv for m1 and m2, one 64-bit divider each per row and pass, "
        "outside the pipelines (as LN_DIV)",
    ),
    *_pair(
        "LNB_DX",
        12,
        "layernorm_backward.h: II=1, independent lanes, the max a comparator tree and one carried "
        "compare-select; depth 12 (two multiplies, three roundings) is an assumption",
    ),
    mem_loop("LNB_STORE_DX", "MEM_WRITE", "write", "op_layernorm_bwd (a dx row, write pass)"),
    Loop("LNB_PARAM_MAX", "LNB_PARAM_MAX", 1, 4, "layernorm_backward.h: II=1, two comparator trees"),
    Loop("LNB_PARAM_OUT", "LNB_PARAM_OUT", 1, 4, "layernorm_backward.h: II=1, independent columns"),
    mem_loop("LNB_STORE_PARAMS", "MEM_WRITE", "write", "op_layernorm_bwd (dgamma, dbeta)"),
    # ---- GELU_BWD (gelu.h)
    Loop(
        "GB_TABLE", "GB_TABLE", 1, 3, "gelu.h gelu_copy_table: II=1, one gelu' knot into every replica bank"
    ),
    mem_loop("GB_LOAD", "MEM_READ", "read", "op_gelu_bwd (a dy row and an x row, per pass)"),
    *_pair(
        "GB_ELEMS",
        10,
        "gelu_backward.h: II=1, one gelu_grad table port per lane (VU_LANES/2 dual-port replicas), "
        "the max a comparator tree and one carried compare-select; depth 10 as GELU",
    ),
    mem_loop("GB_STORE", "MEM_WRITE", "write", "op_gelu_bwd (a dx row, write pass)"),
    # ---- ATTENTION_BWD (attention_backward.h)
    mem_loop("ATB_LOAD_LIST", "MEM_READ", "read", "op_attention_bwd (a patch row's connection list)"),
    Loop(
        "ATB_LIST_CHECK",
        "ATB_LIST_CHECK",
        1,
        2,
        "attention_backward.h: II=1, one index against its predecessor",
    ),
    mem_loop("ATB_LOAD_QKV", "MEM_READ", "read", "op_attention_bwd (q, k, v of a token: three bursts)"),
    Loop(
        "ATB_ZERO",
        "ATB_ZERO",
        2,
        2,
        "attention_backward.h: II=2, one key's dk and dv rows (six token-store rows, two of them in "
        "banks 2 and 3 each: one write port per bank)",
    ),
    mem_loop("ATB_LOAD_DOUT", "MEM_READ", "read", "op_attention_bwd (a dctx row, per pass)"),
    Loop(
        "ATB_DP_MAX",
        "ATB_DP_MAX",
        1,
        10,
        "attention_backward.h: II=1, one key per cycle over all M keys: C products, H adder trees "
        "of D, a comparator tree and one carried compare-select; depth 10 is an assumption",
    ),
    mem_loop("ATB_LOAD_P", "MEM_READ", "read", "op_attention_bwd (a head's probabilities of one row)"),
    _lanes("ATB_ROWDOT_CLEAR", "attention_backward.h: rowdot[h] = 0 over CFG_MAX_HEADS"),
    *_pair(
        "ATB_DP",
        12,
        "attention_backward.h: II=1, one listed key per cycle: dP for every head, requantised, H "
        "carried 64-bit rowdot sums (one adder each); depth 12 is an assumption",
    ),
    _lanes("ATB_DQ_CLEAR", "attention_backward.h: dq[c] = 0 over CFG_MAX_DIM (automatically pipelined)"),
    *_pair(
        "ATB_DS",
        10,
        "attention_backward.h: II=1, one listed key per cycle: dS per head, C products into dq "
        "(registers), dk[j] and dv[j] (read-modify-write of one wide word, dependence declared "
        "false: the keys of a list are distinct); depth 10 is an assumption",
    ),
    _lanes("ATB_DQ_MAX", "attention_backward.h: max over dq's CFG_MAX_DIM lanes (pass 2)"),
    _lanes("ATB_DQ_OUT", "attention_backward.h: dq requantised over CFG_MAX_DIM lanes (pass 3)"),
    mem_loop("ATB_STORE_DQ", "MEM_WRITE", "write", "op_attention_bwd (a dq row, pass 3)"),
    Loop(
        "ATB_KV_MAX",
        "ATB_KV_MAX",
        2,
        4,
        "attention_backward.h: II=2, one key's dk and dv rows read from the shared token-store "
        "banks (two rows per bank), two comparator trees",
    ),
    Loop(
        "ATB_KV_OUT",
        "ATB_KV_OUT",
        1,
        1,
        "attention_backward.h ATB_KV_OUT: one key row per iteration, not pipelined",
    ),
    _lanes("ATB_KV_REQUANT", "attention_backward.h: dk, then dv requantised over CFG_MAX_DIM lanes"),
    mem_loop("ATB_STORE_DKV", "MEM_WRITE", "write", "op_attention_bwd (a dk and a dv row)"),
    # ---- GRAD_ADD, GRAD_REQUANT (grad_add.h, grad_requant.h)
    mem_loop("GA_LOAD", "MEM_READ", "read", "op_grad_add (an a row and a b row, per pass)"),
    *_pair("GA_ELEMS", 4, "grad_add.h: II=1, independent lanes, the max one carried compare-select"),
    mem_loop("GA_STORE", "MEM_WRITE", "write", "op_grad_add (a sum row, write pass)"),
    mem_loop("GR_LOAD", "MEM_READ", "read", "op_grad_requant (a row, per pass)"),
    *_pair("GR_ELEMS", 4, "grad_requant.h: II=1, independent lanes, the max one carried compare-select"),
    mem_loop("GR_STORE", "MEM_WRITE", "write", "op_grad_requant (a row, write pass)"),
    # ---- SCATTER (scatter.h)
    mem_loop("SC_LOAD_IDX", "MEM_READ", "read", "op_scatter (the index list)"),
    Loop("SC_CHECK", "SC_CHECK", 1, 2, "scatter.h: II=1, one index against its predecessor"),
    _lanes("SC_ZERO", "scatter.h: the zero row over CFG_MAX_DIM (automatically pipelined)"),
    Loop("SC_ROWS", "SC_ROWS", 1, 1, "scatter.h SC_ROWS: one output row per iteration, not pipelined"),
    mem_loop("SC_LOAD_ROW", "MEM_READ", "read", "op_scatter (a kept row)"),
    mem_loop("SC_STORE_ROW", "MEM_WRITE", "write", "op_scatter (an output row)"),
    # ---- SGD (sgd.h)
    mem_loop("SGD_LOAD", "MEM_READ", "read", "op_sgd (a gradient row and an int32 master row)"),
    Loop(
        "SGD_ELEMS",
        "SGD_ELEMS",
        1,
        8,
        "sgd.h: II=1, independent lanes, one 16x64-bit product each; depth 8 (multiply 4, two "
        "roundings, saturation) is an assumption",
    ),
    mem_loop("SGD_STORE", "MEM_WRITE", "write", "op_sgd (the master row and the weight row)"),
]


def _fmt(c: OpCost, reads: int, writes: int) -> None:
    """fmt_read x reads, fmt_write x writes (grad_format.h)."""
    c.add("FMT_READ", reads, reads)
    c.add("FMT_RMW_READ", writes, writes)
    c.add("FMT_RMW_WRITE", writes, writes)


def _ce_grad(d: Desc, c: OpCost) -> None:
    M, N = d.f["M"], d.f["N"]
    per16, per32 = c.cfg["I16_PER_WORD"], c.cfg["I32_PER_WORD"]
    c.add("CE_LOAD", ceil_div(M, per32))
    c.add("CE_LABELS", M)
    c.add("CE_LOAD", M * ceil_div(N, per16), M)
    c.add("CE_MAX", M * N, M)
    c.add("CE_EXP", M * N, M)
    c.add("CE_RECIP", 0, M)
    c.add("CE_OUT", M * N, M)
    c.add("CE_STORE", M * ceil_div(N, per16), M)
    _fmt(c, 0, 1)


def _passes(c: OpCost, label: str, trips: int, entries: int) -> None:
    """A two-pass loop: the same trips in the max pass and in the write pass."""
    c.add(label + "_MAXP", trips, entries)
    c.add(label, trips, entries)


def _linear_bwd_dx(d: Desc, c: OpCost) -> None:
    M, N, K = d.f["M"], d.f["N"], d.f["K"]
    rows, cols, per16 = c.cfg["MC_ROWS"], c.cfg["MC_COLS"], c.cfg["I16_PER_WORD"]
    _fmt(c, 1, 1)
    c.add("LBX_LOAD_DY", M * ceil_div(N, per16), M)
    c.add("DYN_FRAC", 0, 1)
    row_tiles = ceil_div(M, rows)
    for k0 in range(0, K, cols):
        kc = min(K - k0, cols)
        c.add("LBX_LOAD_W", 2 * N * ceil_div(kc, per16), 2 * N)  # both passes
        _passes(c, "LBX_MAC", row_tiles * N, row_tiles)
        _passes(c, "LBX_DRAIN", M, row_tiles)
        c.add("LBX_DRAIN_LANES", 2 * M * cols, 2 * M)
        c.add("LBX_STORE_DX", M * ceil_div(kc, per16), M)
    c.macs = 2 * M * N * K  # both passes multiply


def _linear_bwd_dw(d: Desc, c: OpCost) -> None:
    M, N, K = d.f["M"], d.f["N"], d.f["K"]
    rows, cols, per16 = c.cfg["MC_ROWS"], c.cfg["MC_COLS"], c.cfg["I16_PER_WORD"]
    bias = "BIAS" in d.flags
    _fmt(c, 1, 2 if bias else 1)
    c.add("LBW_LOAD_X", M * ceil_div(K, per16), M)
    c.add("DYN_FRAC", 0, 2 if bias else 1)
    col_tiles = ceil_div(K, cols)
    for n0 in range(0, N, rows):
        nc = min(N - n0, rows)
        c.add("LBW_LOAD_DY", 2 * M * ceil_div(nc, per16), 2 * M)  # both passes
        if bias:  # pass 0 only
            c.add("LBW_DB_CLEAR", 2 * rows, 2)
            c.add("LBW_DB", M)
        _passes(c, "LBW_MAC", col_tiles * M, col_tiles)
        _passes(c, "LBW_DRAIN", col_tiles * nc, col_tiles)
        c.add("LBW_DRAIN_LANES", 2 * col_tiles * nc * cols, 2 * col_tiles * nc)
        for k0 in range(0, K, cols):
            c.add("LBW_STORE_DW", nc * ceil_div(min(K - k0, cols), per16), nc)
    if bias:
        c.add("LBW_DB_OUT", N)
        c.add("LBW_STORE_DB", ceil_div(N, per16))
    c.macs = 2 * M * N * K


def _layernorm_bwd(d: Desc, c: OpCost) -> None:
    M, K = d.f["M"], d.f["K"]
    per16, per32, lanes = c.cfg["I16_PER_WORD"], c.cfg["I32_PER_WORD"], c.cfg["VU_LANES"]
    groups = ceil_div(K, lanes)
    _fmt(c, 1, 3)
    c.add("LNB_LOAD_RS", M, M)
    c.add("LNB_LOAD_GAMMA", ceil_div(K, per16))
    c.add("DYN_FRAC", 0, 3)
    c.add("LNB_LOAD_DY", 2 * M * ceil_div(K, per16), 2 * M)
    c.add("LNB_LOAD_N", 2 * M * ceil_div(K, per32), 2 * M)
    _passes(c, "LNB_SUM", M * groups, M)
    c.add("LNB_DIV", 0, 2 * 2 * M)
    _passes(c, "LNB_DX", M * groups, M)
    c.add("LNB_STORE_DX", M * ceil_div(K, per16), M)
    c.add("LNB_PARAM_MAX", groups)
    c.add("LNB_PARAM_OUT", groups)
    c.add("LNB_STORE_PARAMS", 2 * ceil_div(K, per16), 2)


def _elementwise(c: OpCost, prefix: str, M: int, N: int, inputs: int) -> None:
    """A two-pass lane op over (M, N) reading ``inputs`` rows per row and pass (gelu/add/requant)."""
    per16, lanes = c.cfg["I16_PER_WORD"], c.cfg["VU_LANES"]
    c.add(prefix + "_LOAD", 2 * inputs * M * ceil_div(N, per16), 2 * inputs * M)
    _passes(c, prefix + "_ELEMS", M * ceil_div(N, lanes), M)
    c.add(prefix + "_STORE", M * ceil_div(N, per16), M)
    c.add("DYN_FRAC", 0, 1)


def _gelu_bwd(d: Desc, c: OpCost) -> None:
    _fmt(c, 1, 1)
    c.add("GB_TABLE", abi()["luts"]["GELU_GRAD_KNOTS"])  # gelu' into the shared table replicas
    _elementwise(c, "GB", d.f["M"], d.f["N"], 2)


def _grad_add(d: Desc, c: OpCost) -> None:
    _fmt(c, 2, 1)
    _elementwise(c, "GA", d.f["M"], d.f["N"], 2)


def _grad_requant(d: Desc, c: OpCost) -> None:
    _fmt(c, 1, 1)
    _elementwise(c, "GR", d.f["M"], d.f["N"], 1)


def _attention_bwd(d: Desc, c: OpCost) -> None:
    M, C, H, pre = d.f["M"], d.f["N"], d.f["P0"], d.f["P1"]
    sparse = "SPARSE" in d.flags
    ncon = d.f["P2"] if sparse else 0
    per16, per32, dim = c.cfg["I16_PER_WORD"], c.cfg["I32_PER_WORD"], c.cfg["MAX_DIM"]
    _fmt(c, 1, 1)
    if sparse:
        c.add("ATB_LOAD_LIST", (M - pre) * ceil_div(ncon, per32), M - pre)
        c.add("ATB_LIST_CHECK", (M - pre) * ncon, M - pre)
    c.add("ATB_LOAD_QKV", 3 * M * ceil_div(C, per16), 3 * M)
    c.add("DYN_FRAC", 0, 4)
    c.add("ATB_LOAD_DOUT", 4 * M * ceil_div(C, per16), 4 * M)  # every pass
    keys = sum(M if (not sparse or i < pre) else pre + ncon for i in range(M))
    listed_rows = M - pre if sparse else 0
    c.add("ATB_LOAD_LIST", listed_rows * ceil_div(ncon, per32), listed_rows)  # pass 0 reads the lists too
    c.add("ATB_DP_MAX", keys, M)  # pass 0: dP's maximum over the computed (row, key) pairs only
    for p in (1, 2, 3):
        label = "" if p == 3 else "_MAXP"
        if p >= 2:
            c.add("ATB_ZERO", M)
        c.add("ATB_LOAD_LIST", listed_rows * ceil_div(ncon, per32), listed_rows)
        for i in range(M):
            L = M if (not sparse or i < pre) else pre + ncon
            c.add("ATB_LOAD_P", H * ceil_div(L, per16), H)
        c.add("ATB_ROWDOT_CLEAR", M * c.cfg["MAX_HEADS"], M)
        c.add("ATB_DP" + label, keys, M)
        c.add("ATB_DQ_CLEAR", M * dim, M)
        c.add("ATB_DS" + label, keys, M)
    c.add("ATB_DQ_MAX", M * dim, M)  # pass 2
    c.add("ATB_DQ_OUT", M * dim, M)  # pass 3
    c.add("ATB_STORE_DQ", M * ceil_div(C, per16), M)
    c.add("ATB_KV_MAX", M)
    c.add("ATB_KV_OUT", M)
    c.add("ATB_KV_REQUANT", 2 * M * dim, 2 * M)
    c.add("ATB_STORE_DKV", 2 * M * ceil_div(C, per16), 2 * M)
    c.macs = 3 * keys * C + 2 * keys * 3 * C  # dP (3 passes), dS's dq/dk/dv (2 passes)


def _scatter(d: Desc, c: OpCost) -> None:
    M, N, K, pre = d.f["M"], d.f["N"], d.f["K"], d.f["P1"]
    per16 = c.cfg["I16_PER_WORD"]
    c.add("SC_LOAD_IDX", ceil_div(N, c.cfg["I32_PER_WORD"]))
    c.add("SC_CHECK", N)
    c.add("SC_ZERO", c.cfg["MAX_DIM"])
    c.add("SC_ROWS", pre + M)
    c.add("SC_LOAD_ROW", (pre + N) * ceil_div(K, per16), pre + N)
    c.add("SC_STORE_ROW", (pre + M) * ceil_div(K, per16), pre + M)


def _sgd(d: Desc, c: OpCost) -> None:
    M, N = d.f["M"], d.f["N"]
    per16, per32 = c.cfg["I16_PER_WORD"], c.cfg["I32_PER_WORD"]
    _fmt(c, 1, 0)
    beats = ceil_div(N, per16) + ceil_div(N, per32)  # the int16 gradient row and the int32 master row
    c.add("SGD_LOAD", M * beats, 2 * M)
    c.add("SGD_ELEMS", M * ceil_div(N, c.cfg["VU_LANES"]), M)
    c.add("SGD_STORE", M * beats, 2 * M)


BACKWARD_OPS = {
    "CE_GRAD": _ce_grad,
    "LINEAR_BWD_DX": _linear_bwd_dx,
    "LINEAR_BWD_DW": _linear_bwd_dw,
    "LAYERNORM_BWD": _layernorm_bwd,
    "GELU_BWD": _gelu_bwd,
    "ATTENTION_BWD": _attention_bwd,
    "GRAD_ADD": _grad_add,
    "SCATTER": _scatter,
    "GRAD_REQUANT": _grad_requant,
    "SGD": _sgd,
}
assert set(BACKWARD_OPS) <= set(abi()["opcodes"]), "a backward op the ABI does not know"

register(BACKWARD_LOOPS, BACKWARD_OPS)
