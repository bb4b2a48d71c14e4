"""Cycle model of the engine: the kernels' loop nests, from the descriptors, at config.h's sizes.

An estimate, not a measurement. For every op of a descriptor list it counts what the C++ in
hls/include/ops/*.h (and memory.h, desc.h) executes: for each loop the trip count and the
number of times the loop is entered, computed from the descriptor's fields exactly as the
kernel computes them (tests/test_cycle_model.py checks these against the C-sim's SIM_LOOP
counters, op by op). The cycles of a loop are

    trips x II + entries x depth

with the II and pipeline depth of :data:`LOOPS` (each entry says why the kernel reaches that
II and whether the depth is an assumption). Loops that move one m_axi beat per iteration run
at the port's rate (:class:`Memory`: a stated efficiency of one 128-bit beat per cycle) and
pay the AXI round trip once per entry (each entry is one burst). Sequential parts (the LayerNorm
dividers, the rsqrt) are "loops" of zero trips whose depth is their latency. Overlap: only
where the kernel is written for it, the matrix core's weight ping-pong (the next column
tile's weights stream in while the current tile computes, so a tile costs
max(compute, load)); everything else runs in program order, one op after the other. Loops
the kernels leave without a pragma are priced at one cycle per trip (Vitis HLS pipelines one
of more than 64 trips automatically, and keeps a shorter one sequential) and are not counted
by the C-sim.

This module holds the forward ops; cycle_model_backward.py the backward ops and the SGD
update, cycle_core.py what both share. Numbers of the engine (sizes, lanes, port width, clock) come from abi.json, generated from
hls/include/config.h; the II / depth / latency figures below are this model's.
"""

from __future__ import annotations

from . import cycle_model_backward  # noqa: F401  (registers the backward ops' loops)
from .abi import abi
from .cycle_core import (  # noqa: F401  (the model's public names)
    DEFAULT_MEMORY,
    LOOPS,
    OPS,
    Desc,
    Loop,
    Memory,
    OpCost,
    ProgramCost,
    Settings,
    ceil_div,
    mem_loop,
    op_cost,
    program_cost,
    register,
)

# Every loop the model costs. `why` quotes the kernel's reason for the II where it gives one;
# every depth is an ASSUMPTION of this model (no synthesis report exists yet) unless it says
# otherwise.
FORWARD_LOOPS: list[Loop] = [
    # ---- descriptor walker (engine.cpp, desc.h)
    Loop("FETCH_DESC", "DESC_READ", 1, 2, "desc.h: II=1, one beat of the descriptor per cycle", "read"),
    Loop(
        "OP_SETUP",
        None,
        0,
        10,
        "dispatch and the op's descriptor checks (tensor_ok: 64-bit multiplies and compares); "
        "10 cycles per op is an assumption",
    ),
    # ---- LOAD_LUT (ops/lut_load.h)
    mem_loop("LUT_LOAD", "MEM_READ", "read", "op_load_lut"),
    Loop("LUT_COPY", None, 1, 3, "lut_load.h: II=1, one knot per cycle into its table (not counted)"),
    # ---- LINEAR (ops/linear.h)
    Loop(
        "LIN_LOAD_X",
        "LIN_LOAD_X",
        1,
        2,
        "linear.h: II=1, one gmem_a beat read and one write into one bank of xbuf",
        "read",
    ),
    mem_loop("LIN_LOAD_B", "MEM_READ", "read", "op_linear (bias through wmem)"),
    Loop(
        "LIN_LOAD_W",
        "LIN_LOAD_W",
        1,
        2,
        "linear.h: II=1, one wmem beat read (a burst along the row) and one write into bank j",
        "read",
    ),
    Loop(
        "MC_K",
        "LIN_MAC",
        1,
        6,
        "linear.h mc_tile: II=1, each of the MC_ROWS X banks and MC_COLS W banks (complete "
        "partition on dim 1) read once per cycle, acc in registers with a 1-cycle carried add; "
        "depth 6 (BRAM read 2, lane mux 1, DSP multiply 2, 48-bit add 1) is an assumption",
    ),
    Loop(
        "LIN_REQUANT",
        "LIN_REQUANT",
        1,
        5,
        "linear.h: II=1, acc is registers (one VU_LANES-wide mux per iteration), bias and yrow "
        "cyclic by VU_LANES, no carried dependence; depth 5 (mux, bias add, sat48, round, sat16) "
        "is an assumption",
    ),
    mem_loop("LIN_STORE_Y", "MEM_WRITE", "write", "lin_store_tile (one output row of a tile)"),
    # ---- PATCHIFY (ops/patchify.h)
    Loop("PATCH_BAND", "PATCH_BAND", 1, 2, "patchify.h: II=1, one gmem_a beat read, one band write", "read"),
    Loop(
        "PATCH_WORDS",
        "PATCH_WORDS",
        1,
        2,
        "patchify.h: II=1, one band read and one gmem_a beat write, counters instead of dividers",
        "write",
    ),
    Loop(
        "PATCH_PIXELS",
        "PATCH_PIXELS",
        1,
        3,
        "patchify.h: II=1, one band read (lane mux) and one write into out per cycle",
    ),
    mem_loop("PATCH_STORE", "MEM_WRITE", "write", "op_patchify (one patch, P2 not a multiple of 8)"),
    # ---- ADD (ops/add.h)
    mem_loop("ADD_LOAD_X", "MEM_READ", "read", "op_add (X row, gmem_a)"),
    mem_loop("ADD_LOAD_W", "MEM_READ", "read", "op_add (W row, wmem)"),
    Loop(
        "ADD",
        "ADD",
        1,
        4,
        "add.h: II=1, a, b, y cyclic by VU_LANES, elements independent; depth 4 (read, align, "
        "add, round/saturate) is an assumption",
    ),
    mem_loop("ADD_STORE_Y", "MEM_WRITE", "write", "op_add (Y row)"),
    # ---- LAYERNORM (ops/layernorm.h)
    mem_loop("LN_LOAD_PARAMS", "MEM_READ", "read", "op_layernorm (gamma, beta through wmem)"),
    mem_loop("LN_LOAD_X", "MEM_READ", "read", "op_layernorm (X row)"),
    Loop(
        "LN_CLEAR",
        None,
        1,
        0,
        "layernorm.h LN_SUM_CLEAR / LN_VAR_CLEAR: VU_LANES trips without a pragma; below Vitis "
        "HLS's automatic-pipelining threshold (64 trips) it stays a sequential loop, about one "
        "cycle per trip (assumption; not counted)",
    ),
    Loop(
        "LN_SUM",
        "LN_SUM",
        1,
        3,
        "layernorm.h: II=1, x cyclic by VU_LANES, part[l] += x a 1-cycle carried add per lane; "
        "depth 3 is an assumption",
    ),
    Loop(
        "LN_DIV",
        None,
        0,
        76,
        "layernorm.h: ln_tree_sum (16-input adder tree, ~2 cycles) and rdiv, one 64-bit divider "
        "per row outside the pipelines (an HLS sdiv of 64 bits: ~68 cycles) and floor_div's "
        "multiply-back (~6); twice per row (mean, var); 76 cycles each is an assumption",
    ),
    Loop(
        "LN_VAR",
        "LN_VAR",
        1,
        6,
        "layernorm.h: II=1 as LN_SUM (d^2 < 2^48: a pipelined 25x25-bit multiplier per lane); "
        "depth 6 is an assumption",
    ),
    Loop(
        "LN_RSQRT",
        None,
        0,
        12,
        "layernorm.h: rsqrt per row (leading one, mantissa shift, table read, interpolation "
        "multiply); 12 cycles is an assumption",
    ),
    Loop(
        "LN_NORM",
        "LN_NORM",
        1,
        12,
        "layernorm.h: II=1, x, gamma, beta, y, nrow cyclic by VU_LANES, elements independent; "
        "depth 12 (two multiplies, three roundings, saturation) is an assumption",
    ),
    mem_loop("LN_STORE_Y", "MEM_WRITE", "write", "op_layernorm (Y row)"),
    mem_loop("LN_STORE_CACHE", "MEM_WRITE", "write", "op_layernorm flag CACHE (n row, then r and sh)"),
    # ---- GELU (ops/gelu.h)
    Loop("GELU_TABLE", "GELU_TABLE", 1, 3, "gelu.h: II=1, one table read, one write per replica bank"),
    mem_loop("GELU_LOAD_X", "MEM_READ", "read", "op_gelu (X row)"),
    Loop(
        "GELU",
        "GELU",
        1,
        10,
        "gelu.h: II=1, x and y cyclic by VU_LANES, lane l reads replica l/2 whose parity banks "
        "serve two lanes on two ports, no carried dependence; depth 10 (shift, clamp, table "
        "read 2, multiply, two roundings) is an assumption",
    ),
    mem_loop("GELU_STORE_Y", "MEM_WRITE", "write", "op_gelu (Y row)"),
    # ---- ATTENTION (ops/attention.h)
    Loop(
        "ATTN_EXP_COPY",
        "ATTN_EXP_COPY",
        1,
        3,
        "attention.h: II=1, one read of the exp table and one write into each copy's bank",
    ),
    Loop(
        "ATTN_V_LOAD",
        "ATTN_V_LOAD",
        1,
        3,
        "attention.h: II=1 (C <= 2 only), one gmem_a beat and one V row write per bank per cycle",
        "read",
    ),
    Loop(
        "ATTN_KV_LOAD",
        "ATTN_KV_LOAD",
        1,
        3,
        "attention.h: II=1, one qkv beat per cycle into the krow/vrow registers; each copy gets "
        "one wide write per token. Priced as one burst per op; the flattened loop's address "
        "jumps by XS between tokens, and if HLS issues single-beat reads instead, 8 outstanding "
        "reads (engine.cpp) against the round trip would make it several times slower",
        "read",
    ),
    mem_loop("ATTN_LOAD_LIST", "MEM_READ", "read", "op_attention (a patch row's connection list)"),
    Loop(
        "ATTN_KEYS",
        "ATTN_KEYS",
        1,
        3,
        "attention.h: II=1, one list read and one key write per cycle; `ok` is a one-gate recurrence",
    ),
    mem_loop("ATTN_LOAD_Q", "MEM_READ", "read", "op_attention (the query row)"),
    Loop(
        "ATTN_ROW_INIT",
        None,
        1,
        0,
        "attention.h ATTN_ROW_INIT: CFG_MAX_HEADS trips, no pragma, below the 64-trip "
        "automatic-pipelining threshold: sequential, ~1 cycle per trip (assumption; not counted)",
    ),
    Loop(
        "ATTN_ACC_INIT",
        None,
        1,
        2,
        "attention.h ATTN_ACC_INIT: CFG_MAX_DIM trips without a pragma, outside any pipeline; "
        "Vitis HLS pipelines loops of more than 64 trips automatically (UG1399, Automatic Loop "
        "Pipelining) at II=1, one register of acc per cycle: CFG_MAX_DIM cycles per row (not "
        "counted). An UNROLL would make it one cycle",
    ),
    Loop(
        "ATTN_QK",
        "ATTN_QK",
        1,
        10,
        "attention.h: II=1, keys[] and sbuf cyclic by ATTN_KEYS, K one word per port of its "
        "copy, the only recurrence a one-compare max; depth 10 (K read 2, multiply 2, 3-level "
        "adder tree 3, max 1, write 2) is an assumption",
    ),
    Loop(
        "ATTN_EXP",
        "ATTN_EXP",
        1,
        12,
        "attention.h: II=1, lookup (h, u) uses its own copy's even and odd banks (two ports), "
        "esum += group sum is one add; depth 12 (subtract, round, clamp, table read 2, "
        "interpolation multiply 3, round, sum) is an assumption",
    ),
    Loop(
        "ATTN_RECIP",
        "ATTN_RECIP",
        1,
        12,
        "attention.h: II=1, the recip table read at knots i and i+1 through its two ports, no "
        "recurrence; depth 12 (leading one, shift, table read, multiply, round) is an assumption",
    ),
    Loop(
        "ATTN_PV",
        "ATTN_PV",
        1,
        14,
        "attention.h: II=1, V as K in QK, pbuf/pwsum banks take the group's consecutive "
        "positions, acc[c] += group sum one 48-bit add per lane; depth 14 (e r multiply 4, two "
        "roundings, V read 2, p v multiply 2, 4-input sum 2, add 1) is an assumption",
    ),
    Loop(
        "ATTN_CTX",
        None,
        1,
        4,
        "attention.h ATTN_CTX: CFG_MAX_DIM trips (requant of every channel lane) without a pragma; "
        "automatically pipelined at II=1 like ATTN_ACC_INIT: CFG_MAX_DIM cycles per row (not "
        "counted). An UNROLL, or requantising inside the store's beats, would hide it",
    ),
    mem_loop("ATTN_STORE_CTX", "MEM_WRITE", "write", "op_attention (the ctx row)"),
    Loop(
        "ATTN_MAP_SCATTER",
        "ATTN_MAP_SCATTER",
        1,
        3,
        "attention.h: II=1, one read of keys and pwsum, one write of map_row, no recurrence",
    ),
    Loop(
        "ATTN_MAP_STORE",
        "ATTN_MAP_STORE",
        1,
        2,
        "attention.h: II=1, map_row cyclic by 4, each bank read on one port and cleared through the other",
        "write",
    ),
    Loop(
        "ATTN_PROBS_STORE",
        "ATTN_PROBS_STORE",
        1,
        2,
        "attention.h: II=1 while I16_PER_WORD <= 2 ATTN_KEYS: a head's pbuf has ATTN_KEYS dual-port banks",
        "write",
    ),
    # ---- SELECT (ops/select.h)
    mem_loop("SEL_LOAD_ROW", "MEM_READ", "read", "op_select (a score-map row)"),
    Loop(
        "SEL_GATHER",
        "SEL_GATHER",
        1,
        3,
        "select.h: II=1, one read of idx, one random read of row, one write",
    ),
    Loop(
        "SEL_RANK",
        "SEL_RANK",
        1,
        6,
        "select.h: II=1, scores cyclic by SEL_LANES (lane u always reads bank u), rank += count "
        "one small add; depth 6 (read 2, compare, popcount 2, add) is an assumption",
    ),
    Loop("SEL_EMIT", "SEL_EMIT", 1, 2, "select.h: II=1, the recurrence w += kept is one add"),
    mem_loop("SEL_LOAD_ORIGIN", "MEM_READ", "read", "op_select flag ORIGIN (origin in)"),
    Loop(
        "SEL_ORIGIN",
        "SEL_ORIGIN",
        1,
        3,
        "select.h: II=1, one random read of org_in, one write of org_out; `ok` a one-gate recurrence",
    ),
    mem_loop("SEL_STORE", "MEM_WRITE", "write", "op_select (idx, origin out, a connection list)"),
    # ---- GATHER (ops/gather.h)
    mem_loop("GATHER_LOAD_IDX", "MEM_READ", "read", "op_gather (the index list)"),
    Loop(
        "GATHER_CHECK",
        "GATHER_CHECK",
        1,
        2,
        "gather.h: II=1, one read of idx; `ok` a one-gate recurrence",
    ),
    Loop(
        "GATHER_COPY",
        "GATHER_COPY",
        1,
        3,
        "gather.h: II=1, the read and write channels of the m_axi port are independent and no "
        "beat reads what an earlier iteration wrote (DEPENDENCE pragma). Priced as one read and "
        "one write burst per op (the same single-beat risk as ATTN_KV_LOAD)",
        "copy",
    ),
]


def _linear(d: Desc, c: OpCost) -> None:
    cfg = c.cfg
    m, n, k = d.f["M"], d.f["N"], d.f["K"]
    rows, cols, lanes, per_beat = cfg["MC_ROWS"], cfg["MC_COLS"], cfg["VU_LANES"], cfg["I16_PER_WORD"]
    k_words = ceil_div(k, per_beat)
    row_tiles, col_tiles = ceil_div(m, rows), ceil_div(n, cols)
    c.add("LIN_LOAD_X", m * k_words, m)  # LIN_LOAD_X_ROWS: one entry per X row
    if "BIAS" in d.flags:
        c.add("LIN_LOAD_B", ceil_div(n, per_beat))
    tiles = []  # per column tile: (weight-load cycles, compute cycles after its own overlap)
    for jt in range(col_tiles):
        n_cols = min(n - jt * cols, cols)
        load = [("LIN_LOAD_W", n_cols * k_words, n_cols)]  # LIN_LOAD_W_ROWS: one entry per W row
        compute = [
            ("MC_K", row_tiles * k, row_tiles),  # one mc_tile per row tile
            ("LIN_REQUANT", m * ceil_div(n_cols, lanes), m),  # LIN_STORE_ROWS: one entry per output row
            ("LIN_STORE_Y", m * ceil_div(n_cols, per_beat), m),
        ]
        for label, t, e in load + compute:
            c.add(label, t, e)
        hidden = 0.0
        if c.settings.acc_banks > 1:  # what-if: row tile it's store overlaps row tile it+1's MACs
            for it in range(row_tiles - 1):
                n_rows = min(m - it * rows, rows)
                store = [("LIN_REQUANT", n_rows * ceil_div(n_cols, lanes), n_rows),
                         ("LIN_STORE_Y", n_rows * ceil_div(n_cols, per_beat), n_rows)]  # fmt: skip
                hidden += min(c.uses_cycles(store), c.uses_cycles([("MC_K", k, 1)]))
        c.hidden += hidden
        tiles.append((c.uses_cycles(load), c.uses_cycles(compute) - hidden))
    # Ping-pong: the weights of tile jt+1 stream in (gmem_w) while tile jt computes and stores
    # (gmem_a), so the pair costs max(compute, load): the smaller one is hidden. (linear.h says
    # the overlap is not yet confirmed by a synthesis run.)
    for jt in range(col_tiles - 1):
        c.hidden += min(tiles[jt][1], tiles[jt + 1][0])
    c.macs = m * n * k


def _patchify(d: Desc, c: OpCost) -> None:
    per_beat = c.cfg["I16_PER_WORD"]
    cin, size, p = d.f["P0"], d.f["P1"], d.f["P2"]
    grid, length = size // p, cin * p * p
    c.add("PATCH_BAND", grid * cin * p * ceil_div(size, per_beat), grid * cin * p)
    if p % per_beat == 0:
        c.add("PATCH_WORDS", grid * grid * (length // per_beat), grid * grid)
    else:
        c.add("PATCH_PIXELS", grid * grid * length, grid * grid)
        c.add("PATCH_STORE", grid * grid * ceil_div(length, per_beat), grid * grid)


def _add(d: Desc, c: OpCost) -> None:
    m, n = d.f["M"], d.f["N"]
    beats = ceil_div(n, c.cfg["I16_PER_WORD"])
    c.add("ADD_LOAD_X", m * beats, m)
    c.add("ADD_LOAD_W", m * beats, m)
    c.add("ADD", m * ceil_div(n, c.cfg["VU_LANES"]), m)
    c.add("ADD_STORE_Y", m * beats, m)


def _layernorm(d: Desc, c: OpCost) -> None:
    cfg = c.cfg
    m, k = d.f["M"], d.f["K"]
    beats, groups = ceil_div(k, cfg["I16_PER_WORD"]), ceil_div(k, cfg["VU_LANES"])
    c.add("LN_LOAD_PARAMS", 2 * beats, 2)
    c.add("LN_LOAD_X", m * beats, m)
    c.add("LN_CLEAR", 2 * m * cfg["VU_LANES"], 2 * m)
    c.add("LN_SUM", m * groups, m)
    c.add("LN_DIV", 0, 2 * m)
    c.add("LN_VAR", m * groups, m)
    c.add("LN_RSQRT", 0, m)
    c.add("LN_NORM", m * groups, m)
    c.add("LN_STORE_Y", m * beats, m)
    if "CACHE" in d.flags:
        c.add("LN_STORE_CACHE", m * (ceil_div(k, cfg["I32_PER_WORD"]) + 1), 2 * m)


def _gelu(d: Desc, c: OpCost) -> None:
    m, n = d.f["M"], d.f["N"]
    beats = ceil_div(n, c.cfg["I16_PER_WORD"])
    c.add("GELU_TABLE", abi()["luts"]["GELU_KNOTS"])
    c.add("GELU_LOAD_X", m * beats, m)
    c.add("GELU", m * ceil_div(n, c.cfg["VU_LANES"]), m)
    c.add("GELU_STORE_Y", m * beats, m)


def _attention(d: Desc, c: OpCost) -> None:
    cfg = c.cfg
    per16, per32, keys_per_cycle = cfg["I16_PER_WORD"], cfg["I32_PER_WORD"], cfg["ATTN_KEYS"]
    M, C, H, prefix = d.f["M"], d.f["N"], d.f["P0"], d.f["P1"]
    sparse = "SPARSE" in d.flags
    n_conn = d.f["P2"] if sparse else 0
    c.add("ATTN_EXP_COPY", abi()["luts"]["EXP_KNOTS"])
    first = C // per16  # attn_load_kv: the beat holding column C, up to column 3C-1
    beats = ceil_div(3 * C, per16) - first
    c.add("ATTN_KV_LOAD", M * beats)
    if (2 * C - 1) // per16 - first == beats - 1:  # C <= 2: K and V share a beat, V rows follow
        c.add("ATTN_V_LOAD", M)
    for i in range(M):  # ATTN_ROWS
        listed = sparse and i >= prefix
        length = prefix + n_conn if listed else M
        groups = ceil_div(length, keys_per_cycle)
        if listed:
            c.add("ATTN_LOAD_LIST", ceil_div(n_conn, per32))
            c.add("ATTN_KEYS", n_conn)
        c.add("ATTN_LOAD_Q", ceil_div(C, per16))
        c.add("ATTN_ROW_INIT", cfg["MAX_HEADS"])
        c.add("ATTN_ACC_INIT", cfg["MAX_DIM"])
        c.add("ATTN_QK", groups)
        c.add("ATTN_EXP", groups)
        c.add("ATTN_RECIP", H)
        c.add("ATTN_PV", groups)
        c.add("ATTN_CTX", cfg["MAX_DIM"])
        c.add("ATTN_STORE_CTX", ceil_div(C, per16))
        if "MAP" in d.flags:
            c.add("ATTN_MAP_SCATTER", length)
            c.add("ATTN_MAP_STORE", ceil_div(M, per32))
        if "PROBS" in d.flags:
            c.add("ATTN_PROBS_STORE", H * ceil_div(M, per16))
        c.macs += 2 * length * C  # q k^T and p v


def _topk(c: OpCost, n: int) -> None:
    """sel_scores + sel_topk over n candidates (select.h)."""
    c.add("SEL_GATHER", n)
    c.add("SEL_RANK", n * ceil_div(n, c.cfg["SEL_LANES"]))
    c.add("SEL_EMIT", n)


def _select(d: Desc, c: OpCost) -> None:
    per32 = c.cfg["I32_PER_WORD"]
    M, prefix, n_keep, n_conn = d.f["M"], d.f["P1"], d.f["P2"], d.f["P3"]
    n_patch = M - prefix
    origin = "ORIGIN" in d.flags
    c.add("SEL_LOAD_ROW", ceil_div(M, per32))  # the [CLS] row
    _topk(c, n_patch)
    if origin:
        c.add("SEL_LOAD_ORIGIN", ceil_div(n_patch, per32))
    c.add("SEL_ORIGIN", n_keep)
    c.add("SEL_STORE", ceil_div(n_keep, per32))  # idx
    if origin or d.f["AUX2"] != 0:
        c.add("SEL_STORE", ceil_div(n_keep, per32))  # origin out
    if n_conn > 0:
        for _ in range(n_keep):  # SEL_CONN_ROWS
            c.add("SEL_LOAD_ROW", ceil_div(M, per32))
            _topk(c, n_keep)
            c.add("SEL_STORE", ceil_div(n_conn, per32))


def _gather(d: Desc, c: OpCost) -> None:
    N, K, prefix = d.f["N"], d.f["K"], d.f["P1"]
    c.add("GATHER_LOAD_IDX", ceil_div(N, c.cfg["I32_PER_WORD"]))
    c.add("GATHER_CHECK", N)
    c.add("GATHER_COPY", (prefix + N) * ceil_div(K, c.cfg["I16_PER_WORD"]))


def _load_lut(d: Desc, c: OpCost) -> None:
    n = d.f["N"]
    c.add("LUT_LOAD", ceil_div(n, c.cfg["I32_PER_WORD"]))
    c.add("LUT_COPY", n)


FORWARD_OPS = {
    "NOP": lambda d, c: None,
    "LOAD_LUT": _load_lut,
    "LINEAR": _linear,
    "PATCHIFY": _patchify,
    "ADD": _add,
    "LAYERNORM": _layernorm,
    "GELU": _gelu,
    "ATTENTION": _attention,
    "SELECT": _select,
    "GATHER": _gather,
}


register(FORWARD_LOOPS, FORWARD_OPS)
