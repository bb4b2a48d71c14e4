"""Resource ESTIMATE of the engine (forward and backward) on the ZU9EG: DSP48E2, BRAM36, LUTs.

    python bench/hls_resources.py [--abi host/trilevel_host/engine/abi.json] [--output FILE.json]

Reads the generated copy of config.h (abi.json: python hls/tools/gen_abi_json.py) and the
m_axi pragmas of hls/src/engine.cpp, and counts each hardware component of the one engine
that runs the forward and the backward ops, with the assumption written next to it. This
is an architecture estimate made before synthesis, not a Vitis HLS report:

- DSPs: the one multiplier array (MAC_LANES = MC_ROWS x MC_COLS lanes, mac_array.h, which
  every matmul of every op uses), plus every multiplier of the vector and row units, op by
  op, at the operand widths docs/fixed_point.md bounds (the C++ computes in 64-bit wide_t;
  synthesis needs these narrower types, or a product costs up to 12 DSPs). Ops never share
  their vector multipliers (each op's loops have their own), so forward and backward ops
  are summed.
- BRAM: the shared on-chip memories of hls/include/buffers.h, declared once, plus each op's
  own row buffers, bank by bank (a memory read through two ports in one cycle is a true
  dual-port bank: at most 36 bits wide per BRAM36).
- LUTs: rough per-unit figures (good to perhaps 50%); flip-flops are not counted.

Writes the per-component table, totals, utilisation and margin to
bench/results/hls_resources.json, prints the table, and says plainly when a resource is over
the margin, with the totals of a few one-define alternatives.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ABI_JSON = ROOT / "host" / "trilevel_host" / "engine" / "abi.json"
ENGINE_CPP = ROOT / "hls" / "src" / "engine.cpp"
OUTPUT = ROOT / "bench" / "results" / "hls_resources.json"

DEVICE = {"name": "xczu9eg-ffvb1156-2-e (ZCU102)", "dsp": 2520, "bram36": 912, "lut": 274080}
# A resource above this share of the device leaves no room for the estimate's error, for
# what Vitis HLS adds (pipeline registers, FIFOs, muxes) and for routing at 150 MHz.
MARGIN = 0.90

# BRAM36 (36 Kb) and its BRAM18 half: (width, depth) shapes. Simple dual port (one read, one
# write port) reaches 72 bits (36 on a BRAM18); true dual port (two reads a cycle) 36 (18).
BRAM36_SHAPES = ((72, 512), (36, 1024), (18, 2048), (9, 4096), (4, 8192), (2, 16384), (1, 32768))
BRAM18_SHAPES = ((36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384))
LUTRAM_MAX_BITS = 1024  # a bank this small goes to distributed RAM (LUTs), not a block RAM
LUTRAM_BITS_PER_LUT = 32  # a LUT6 holds 64 bits; a second read port doubles it
LUT_TABLE_KNOTS = 2050  # exp, gelu, gelu_grad (fixed.h)
FORWARD_OPS = ("LOAD_LUT", "LINEAR", "PATCHIFY", "ADD", "LAYERNORM", "GELU", "ATTENTION", "SELECT", "GATHER")
BACKWARD_OPS = (
    "CE_GRAD",
    "LINEAR_BWD_DX",
    "LINEAR_BWD_DW",
    "LAYERNORM_BWD",
    "GELU_BWD",
    "ATTENTION_BWD",
    "GRAD_ADD",
    "SCATTER",
    "GRAD_REQUANT",
    "SGD",
)


@dataclass
class Term:
    component: str
    dsp: float
    bram36: float
    lut: float
    assumption: str


def dsp_per_product(a_bits: int, b_bits: int) -> int:
    """DSP48E2s for an a x b signed product: the 27x18 multiplier tiled over the operands."""
    return min(
        math.ceil(a_bits / 27) * math.ceil(b_bits / 18), math.ceil(a_bits / 18) * math.ceil(b_bits / 27)
    )


def bank_cost(depth: int, width: int, tdp: bool = False) -> tuple[float, float]:
    """(BRAM36, LUTs) of one memory bank: the cheapest BRAM36/BRAM18 tiling (an 18K half counts
    0.5), or distributed RAM when the bank holds at most LUTRAM_MAX_BITS. ``tdp``: two reads a
    cycle (true dual port), which rules out the 72- and 36-bit simple-dual-port shapes."""
    if depth * width <= LUTRAM_MAX_BITS:
        return 0.0, math.ceil(depth * width / LUTRAM_BITS_PER_LUT)
    s36 = [s for s in BRAM36_SHAPES if not (tdp and s[0] > 36)]
    s18 = [s for s in BRAM18_SHAPES if not (tdp and s[0] > 18)]
    full = min(math.ceil(width / w) * math.ceil(depth / d) for w, d in s36)
    half = min(math.ceil(width / w) * math.ceil(depth / d) for w, d in s18) / 2
    return min(full, half), 0.0


def buffer(component: str, banks: int, depth: int, width: int, assumption: str, tdp: bool = False) -> Term:
    bram, lut = bank_cost(depth, width, tdp)
    ports = "true dual port" if tdp else "one read + one write port"
    return Term(
        component,
        0,
        banks * bram,
        banks * lut,
        f"{banks} banks x {depth} deep x {width} bits ({ports}); {assumption}",
    )


def buffers_group(component: str, parts: list[tuple[int, int, int, bool, str]], assumption: str) -> Term:
    """One Term for several arrays of one op: parts are (banks, depth, width, tdp, name)."""
    bram = lut = 0.0
    names = []
    for banks, depth, width, tdp, name in parts:
        b, lutram = bank_cost(depth, width, tdp)
        bram, lut = bram + banks * b, lut + banks * lutram
        names.append(f"{name} {banks}x{depth}x{width}")
    return Term(component, 0, bram, lut, f"{', '.join(names)} (banks x depth x bits); {assumption}")


def mux_luts_per_bit(inputs: int) -> float:
    """LUTs per bit of an n:1 multiplexer (a LUT6 holds a 4:1 mux; F7/F8 muxes pair them)."""
    if inputs <= 1:
        return 0.0
    if inputs == 2:
        return 0.5
    return math.ceil(inputs / 4) * (1.0 if inputs <= 4 else 1.0)


def maxi_pragmas(source: Path = ENGINE_CPP) -> dict[str, dict[str, int]]:
    """{bundle: {max_read_burst_length, num_read_outstanding, ...}} from the INTERFACE m_axi pragmas."""
    out: dict[str, dict[str, int]] = {}
    for line in source.read_text().splitlines():
        if "INTERFACE m_axi" in line.replace("  ", " "):
            bundle = re.search(r"bundle\s*=\s*(\w+)", line).group(1)
            out[bundle] = {k: int(v) for k, v in re.findall(r"(\w+)\s*=\s*(\d+)", line)}
    if not out:
        raise ValueError(f"no m_axi INTERFACE pragma found in {source}")
    return out


def geometry(cfg: dict[str, int]) -> dict[str, int]:
    """The sizes of hls/include/buffers.h, derived from the config as the C++ derives them."""
    i16 = cfg["AXI_BITS"] // 16
    rows, tokens, k_words = cfg["MC_ROWS"], cfg["MAX_TOKENS"], math.ceil(cfg["MAX_K"] / i16)
    xw_row = math.ceil(k_words / rows)
    keys = cfg["ATTN_KEYS"]
    return dict(
        i16=i16,
        k_words=k_words,
        xp_depth=max(math.ceil(tokens / rows) * k_words, tokens * xw_row),
        tok_banks=keys,
        tok_beats=cfg["MAX_DIM"] // i16,
        tok_depth=2 * tokens + math.ceil(tokens / keys),
        tab_copies=max(cfg["MAX_HEADS"] * keys // 2, cfg["VU_LANES"] // 2),
        tab_half=math.ceil(LUT_TABLE_KNOTS / 2),
        vrow_depth=math.ceil(max(cfg["MAX_HIDDEN"], cfg["MAX_K"], cfg["MAX_OUT"]) / cfg["VU_LANES"]),
    )


def array_lane_mappings(cfg: dict[str, int]) -> list[tuple[str, int, int, str, str, str]]:
    """(mapping, first lane, last lane + 1, a source, b source, addend source) for every use of
    the multiplier array, as the C++ maps its operands. A source is a name: two mappings that
    read the same signal (a token-store bank's read port, say) need no mux input between
    them; "" is no addend (0)."""
    mac, dim, keys = cfg["MC_ROWS"] * cfg["MC_COLS"], cfg["MAX_DIM"], cfg["ATTN_KEYS"]
    out = [("matrix core (LINEAR, dX, dW): outer product", 0, mac, "mc a", "mc b", "mc acc")]
    for u in range(keys):
        lo, hi = u * dim, (u + 1) * dim
        out.append((f"attention q k^T, key {u}", lo, hi, "attn q row", f"token store bank {u}", ""))
        out.append(
            (
                f"attention p v, key {u}",
                lo,
                hi,
                "attn p",
                f"token store bank {u}",
                "attn acc" if u == 0 else "",
            )
        )
    out += [
        ("attention backward dO v^T", 0, dim, "atb dO row", "token store bank 0", ""),
        ("attention backward p^T dO", dim, 2 * dim, "atb p", "atb dO row", "token store rows"),
        ("attention backward dS k", 0, dim, "atb dS", "token store bank 1", "atb dq"),
        ("attention backward dS^T q", dim, 2 * dim, "atb dS", "atb q row", "token store rows"),
    ]
    return out


def multiplier_array(cfg: dict[str, int]) -> Term:
    mac = cfg["MC_ROWS"] * cfg["MC_COLS"]
    maps = array_lane_mappings(cfg)
    lanes = max(m[2] for m in maps)
    cuts = sorted({0, lanes, *(m[1] for m in maps), *(m[2] for m in maps)})
    lut = 0.0
    for lo, hi in zip(cuts, cuts[1:], strict=False):
        users = [m for m in maps if m[1] <= lo and hi <= m[2]]
        a, b = {m[3] for m in users}, {m[4] for m in users}
        c = {m[5] for m in users if m[5]}
        lut += (hi - lo) * (
            16 * (mux_luts_per_bit(len(a)) + mux_luts_per_bit(len(b))) + 48 * mux_luts_per_bit(len(c))
        )
    over = (
        ""
        if lanes <= mac
        else f" The mappings need {lanes} lanes, more than MAC_LANES: the C++ refuses this config."
    )
    return Term(
        "multiplier array (every matmul, forward and backward)",
        max(lanes, mac),
        0,
        lut + 250 * cfg["MC_COLS"],
        f"MAC_LANES = MC_ROWS x MC_COLS = {mac} lanes, one DSP48E2 each (16x16 product and a 48-bit addend in "
        "the post-adder, so accumulation stays in the DSP); one instance (ALLOCATION limit 1 on mac_products and "
        "mc_accumulate), used in turn by the matrix core (all lanes), the attention's q k^T and p v "
        f"(ATTN_KEYS x MAX_DIM = {cfg['ATTN_KEYS'] * cfg['MAX_DIM']} lanes) and the attention backward "
        f"(2 x MAX_DIM = {2 * cfg['MAX_DIM']} lanes).{over} LUTs: per lane, a 16-bit mux per operand over its "
        "distinct sources (the token store's bank read ports are one source whatever the op) and a 48-bit mux "
        "over the addend sources; 250 per output column (bias add, rounding shift, saturation). Not counted: "
        f"the {mac} x 48-bit accumulator registers (flip-flops)",
    )


def vector_multipliers(cfg: dict[str, int]) -> list[Term]:
    """Every multiplier outside the array, op by op (widths from docs/fixed_point.md)."""
    lanes, heads, keys = cfg["VU_LANES"], cfg["MAX_HEADS"], cfg["ATTN_KEYS"]
    lookups = heads * keys
    row = dsp_per_product(26, 8)  # recip / rsqrt interpolation, once per row
    ops = [
        (
            "LAYERNORM",
            "fwd",
            lanes,
            [(26, 26, "d^2"), (26, 25, "d r"), (22, 16, "n gamma")],
            1,
            1500,
            "rsqrt once per row",
        ),  # fmt: skip
        ("GELU", "fwd", lanes, [(18, 7, "table interpolation")], 0, 500, ""),
        (
            "ATTENTION",
            "fwd",
            lookups,
            [(18, 7, "exp interpolation"), (25, 25, "e r (probabilities)")],
            1,
            400,
            f"{heads} heads x {keys} keys a cycle; recip once per head and row; the products q k^T, p v are on the "
            "multiplier array",
        ),  # fmt: skip
        (
            "LAYERNORM_BWD",
            "bwd",
            lanes,
            [(16, 16, "dy gamma"), (16, 20, "dy n"), (31, 20, "dn n"), (20, 36, "n m2"), (42, 25, "t r")],
            0,
            1500,
            "",
        ),  # fmt: skip
        ("GELU_BWD", "bwd", lanes, [(18, 7, "gelu' interpolation"), (16, 18, "dy gelu'")], 0, 500, ""),
        (
            "ATTENTION_BWD",
            "bwd",
            heads,
            [(16, 16, "rowdot dP p"), (16, 24, "dS = p (dP - rowdot)")],
            0,
            600,
            "per head; dP, dq, dk, dv are on the multiplier array",
        ),  # fmt: skip
        ("CE_GRAD", "bwd", 1, [(18, 7, "exp interpolation"), (25, 25, "e r")], 1, 800, "one class a cycle"),
        ("SGD", "bwd", lanes, [(16, 48, "g lr_q (lr_q below 2^47 by the op's check)")], 0, 300, ""),
    ]
    out = []
    for op, kind, n, products, row_units, lut_per_lane, note in ops:
        per = sum(dsp_per_product(a, b) for a, b, _ in products)
        dsp = n * per + row_units * row
        what = ", ".join(f"{name} ({a}x{b} bits: {dsp_per_product(a, b)})" for a, b, name in products)
        out.append(
            Term(
                f"vector multipliers, {kind}: {op}",
                dsp,
                0,
                n * lut_per_lane + row_units * 600,
                f"{n} lanes x {per} DSP: {what}"
                + (f"; {note}" if note else "")
                + f". LUTs: {lut_per_lane} per lane "
                "(64-bit adders, rounding shifters, saturation)"
                + (", 600 per row unit" if row_units else ""),
            )
        )
    return out


def shared_memories(cfg: dict[str, int]) -> list[Term]:
    g = geometry(cfg)
    rows, cols, axi = cfg["MC_ROWS"], cfg["MC_COLS"], cfg["AXI_BITS"]
    return [
        buffer(
            "shared: xpanel (EngineBuffers::xpanel)",
            rows,
            g["xp_depth"],
            axi,
            "beats; LINEAR's X (bank = token row of a tile), LINEAR_BWD_DX's dy, LINEAR_BWD_DW's x (by beats)",
        ),
        buffer(
            "shared: token store (EngineBuffers::tok)",
            g["tok_banks"] * g["tok_beats"],
            g["tok_depth"],
            axi,
            f"{g['tok_banks']} banks x {g['tok_beats']} beat slots, each its own memory (a whole row of MAX_DIM "
            "int16 per bank and cycle, single beats written without touching the rest of a row): ATTENTION's K and "
            "V (one copy per key lane), LINEAR's two W tiles, the dX / dW panels, ATTENTION_BWD's q, k, v and its "
            f"48-bit dk / dv. Without the sharing: K and V copies, 2 x {cols} W banks, and the backward's own "
            "q/k/v, dk/dv, dy and x buffers (about 2.9 MB more)",
        ),
        buffer(
            "shared: table replicas (EngineBuffers::tab)",
            2 * g["tab_copies"],
            g["tab_half"],
            32,
            f"{g['tab_copies']} copies split by knot parity, two lookups a copy and cycle: ATTENTION's exp (MAX_HEADS "
            "x ATTN_KEYS / 2 copies), GELU's gelu and GELU_BWD's gelu' (VU_LANES / 2 copies) in turn",
            tdp=True,
        ),
        buffers_group(
            "shared: vector rows (EngineBuffers::vrow, vrow32, vwide)",
            [
                (4 * cfg["VU_LANES"], g["vrow_depth"], 16, False, "vrow"),
                (3 * cfg["VU_LANES"], g["vrow_depth"], 32, False, "vrow32"),
                (cfg["VU_LANES"], math.ceil(cfg["MAX_DIM"] / cfg["VU_LANES"]), 64, False, "vwide"),
            ],
            "rows of the longest vector row, cyclic over VU_LANES banks: every vector op's rows in turn (ADD, "
            "LAYERNORM and its backward, GELU and its backward, GRAD_ADD, GRAD_REQUANT, SGD, CE_GRAD, SCATTER, "
            "LINEAR's bias, LINEAR_BWD_DW's db)",
        ),
        buffers_group(
            "shared: tables (Luts, OP_LOAD_LUT)",
            [
                (1, LUT_TABLE_KNOTS, 32, True, "exp"),
                (1, LUT_TABLE_KNOTS, 32, True, "gelu"),
                (1, LUT_TABLE_KNOTS, 32, True, "gelu_grad"),
                (1, 258, 32, True, "recip"),
                (1, 770, 32, True, "rsqrt"),
            ],
            "knots i and i + 1 a lookup (true dual port); they stay on chip between starts",
        ),
    ]


def op_memories(cfg: dict[str, int]) -> list[Term]:
    """Each op's own buffers (local arrays and small statics), as the C++ partitions them."""
    tokens, heads, keys = cfg["MAX_TOKENS"], cfg["MAX_HEADS"], cfg["ATTN_KEYS"]
    i32, sel, i16 = cfg["I32_PER_WORD"], cfg["SEL_LANES"], cfg["AXI_BITS"] // 16
    per_key = math.ceil(tokens / keys)
    per_word = math.ceil(tokens / i32)
    groups = {
        "PATCHIFY": [
            (
                1,
                cfg["MAX_CIN"] * cfg["MAX_PATCH"] * math.ceil(cfg["MAX_IMG"] / i16),
                cfg["AXI_BITS"],
                False,
                "band",
            )
        ],  # fmt: skip
        "ATTENTION": [
            (heads * keys, per_key, 48, False, "scores"),
            (heads * keys, per_key, 32, False, "exp values"),
            (heads * keys, per_key, 16, False, "probabilities"),
            (keys, per_key, 32, False, "p_wide head sums"),
            (keys, per_key, 16, False, "keys"),
            (i32, per_word, 32, False, "list"),
            (i32, per_word, 32, False, "map row"),
        ],
        "SELECT": [
            (5 * i32, per_word, 32, False, "row, idx, origins, list"),
            (sel, math.ceil(tokens / sel), 32, False, "scores"),
        ],  # fmt: skip
        "GATHER, SCATTER, CE_GRAD": [
            (i32, per_word, 32, False, "gather idx"),
            (2, tokens, 32, False, "scatter idx, labels"),
        ],  # fmt: skip
        "LOAD_LUT": [(1, LUT_TABLE_KNOTS, 32, False, "staging")],
        "LAYERNORM_BWD": [(1, tokens * i32, 32, False, "r, sh")],
        "ATTENTION_BWD": [(1, tokens, 32, False, "list"), (2 * heads, tokens, 16, False, "p, dP")],
    }
    return [buffers_group(f"op buffers: {op}", parts, "local to the op") for op, parts in groups.items()]


def estimate(cfg: dict[str, int], maxi: dict[str, dict[str, int]]) -> list[Term]:
    """Every component's (DSP, BRAM36, LUT) for the configuration ``cfg`` (config.h without CFG_)."""
    axi = cfg["AXI_BITS"]
    t: list[Term] = [multiplier_array(cfg), *vector_multipliers(cfg)]
    t.append(
        Term(
            "attention row engines: adder trees and channel sums",
            0,
            0,
            cfg["ATTN_KEYS"] * cfg["MAX_DIM"] * 24 + cfg["MAX_DIM"] * 96 + cfg["MAX_DIM"] * 24,
            "q k^T: per key, a tree of 4-input adders over MAX_DIM products (about 24 LUTs per product); p v: a "
            "4-input 48-bit add per channel (96); the backward's dP: one tree (24 per channel)",
        )
    )
    t.append(
        Term(
            "TA-Selector rank counting",
            0,
            0,
            cfg["SEL_LANES"] * 60 + 2000,
            f"{cfg['SEL_LANES']} comparators (32-bit compare and count) at 60 LUTs, 2000 for top-k control",
        )
    )
    n_ops = len(FORWARD_OPS) + len(BACKWARD_OPS)
    t.append(
        Term(
            "op control and address generation",
            0,
            0,
            n_ops * 1500 + 2 * 5000,
            f"{len(FORWARD_OPS)} forward and {len(BACKWARD_OPS)} backward ops, 1500 LUTs each: loop FSM, row "
            "addresses, descriptor checks (32-bit address products in fabric, once per row: no DSPs); two pipelined "
            "64-bit dividers (rdiv: LayerNorm's mean and variance, its backward's m1 and m2) at 5000",
        )
    )
    t += shared_memories(cfg)
    t += op_memories(cfg)
    for bundle, p in sorted(maxi.items()):
        depth_r = p.get("max_read_burst_length", 16) * p.get("num_read_outstanding", 16)
        bram = bank_cost(depth_r, axi)[0]
        note = f"read FIFO {depth_r} x {axi} bits"
        if "max_write_burst_length" in p:
            depth_w = p["max_write_burst_length"] * p.get("num_write_outstanding", 16)
            bram += bank_cost(depth_w, axi + axi // 8)[0]
            note += f", write FIFO {depth_w} x {axi + axi // 8} bits (data and strobes)"
        t.append(
            Term(
                f"m_axi adapter {bundle}",
                0,
                bram,
                2500,
                f"{note} (burst x outstanding, engine.cpp pragmas); 2500 LUTs of adapter logic",
            )
        )
    t.append(
        Term(
            "AXI-Lite control, SmartConnects, reset",
            0,
            0,
            400 + 3 * 1200 + 50,
            "the s_axi_control slave 400 LUTs; three 1x1 SmartConnects (same clock and width) 1200 each; "
            "proc_sys_reset 50",
        )
    )
    return t


def summarise(terms: list[Term]) -> dict:
    totals = {r: sum(getattr(x, r) for x in terms) for r in ("dsp", "bram36", "lut")}
    util = {r: totals[r] / DEVICE[r] for r in totals}
    return {
        "totals": {r: round(v, 1) for r, v in totals.items()},
        "utilisation": {r: round(v, 3) for r, v in util.items()},
        "margin": {r: round(1 - v, 3) for r, v in util.items()},
        "inside_device": all(v <= 1 for v in util.values()),
        "fits_with_margin": all(v <= MARGIN for v in util.values()),
        "over_margin": [r for r, v in util.items() if v > MARGIN],
    }


def report(cfg: dict[str, int], maxi: dict) -> dict:
    terms = estimate(cfg, maxi)
    return {
        "kind": "estimate (architecture model before synthesis, not a Vitis HLS or Vivado report)",
        "device": DEVICE,
        "margin_rule": f"fits with margin when every resource is at most {MARGIN:.0%} of the device",
        "config": cfg,
        "components": [asdict(x) for x in terms],
        **summarise(terms),
    }


ALTERNATIVES = {
    "MC_ROWS=32": {"MC_ROWS": 32},
    "MC_ROWS=28": {"MC_ROWS": 28},
    "VU_LANES=8": {"VU_LANES": 8},
    "MAX_K=768 (fc2 in two passes)": {"MAX_K": 768},
}


def alternatives(cfg: dict[str, int], maxi: dict) -> dict[str, dict]:
    """Totals of a few one-define changes, to choose a config that fits (config.h is not edited)."""
    out = {}
    for name, change in ALTERNATIVES.items():
        if all(cfg.get(k) == v for k, v in change.items()):
            continue
        s = summarise(estimate({**cfg, **change}, maxi))
        out[name] = {
            "totals": s["totals"],
            "utilisation": s["utilisation"],
            "fits_with_margin": s["fits_with_margin"],
        }
    return out


def table(rep: dict) -> str:
    lines = [f"{'component':<58} {'DSP':>6} {'BRAM36':>7} {'LUT':>8}"]
    for c in rep["components"]:
        lines.append(f"{c['component']:<58} {c['dsp']:>6.0f} {c['bram36']:>7.1f} {c['lut']:>8.0f}")
    t, u = rep["totals"], rep["utilisation"]
    lines.append(f"{'total (estimate)':<58} {t['dsp']:>6.0f} {t['bram36']:>7.1f} {t['lut']:>8.0f}")
    d = rep["device"]
    lines.append(f"{'ZU9EG':<58} {d['dsp']:>6} {d['bram36']:>7} {d['lut']:>8}")
    lines.append(f"{'utilisation':<58} {u['dsp']:>6.0%} {u['bram36']:>7.0%} {u['lut']:>8.0%}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--abi", type=Path, default=ABI_JSON, help="abi.json generated from config.h")
    ap.add_argument("--output", type=Path, default=OUTPUT)
    args = ap.parse_args(argv)
    try:
        cfg = json.loads(args.abi.read_text())["config"]
        maxi = maxi_pragmas()
    except (OSError, KeyError, ValueError) as e:
        print(f"error: hls_resources: {e}", file=sys.stderr)
        return 1
    rep = report(cfg, maxi)
    rep["alternatives"] = alternatives(cfg, maxi)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(rep, indent=1) + "\n")
    print(table(rep))
    if rep["fits_with_margin"]:
        print(f"\nESTIMATE: fits the ZU9EG with margin (every resource <= {MARGIN:.0%}).")
    else:
        over = ", ".join(f"{r} {rep['utilisation'][r]:.0%}" for r in rep["over_margin"])
        where = "inside the device but " if rep["inside_device"] else ""
        print(f"\nESTIMATE: {where}NOT within the {MARGIN:.0%} margin: {over}.")
    for name, alt in rep["alternatives"].items():
        u = alt["utilisation"]
        ok = "fits with margin" if alt["fits_with_margin"] else "over the margin"
        print(f"  with {name:<30} DSP {u['dsp']:.0%}  BRAM36 {u['bram36']:.0%}  LUT {u['lut']:.0%}  ({ok})")
    print(f"wrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
