"""Resource ESTIMATE of the engine on the ZU9EG: DSP48E2, BRAM36 and LUTs, from config.h.

    python bench/hls_resources.py [--abi host/trilevel_host/engine/abi.json] [--output FILE.json]

Reads the generated copy of config.h (abi.json: python hls/tools/gen_abi_json.py) and the
m_axi pragmas of hls/src/engine.cpp, and counts each hardware component with the
assumption written next to it. This is an architecture estimate made before synthesis,
not a Vitis HLS report: DSP and BRAM follow from the array shapes and buffer banking
(good to about 10%); LUTs are rough per-unit figures (good to perhaps 50%). Writes the
per-component table, totals, utilisation and margin to bench/results/hls_resources.json,
prints the table, and says plainly when a resource is over the margin.
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

# BRAM36 (36 Kb) and its BRAM18 half in simple dual-port mode: (width, depth) shapes.
BRAM36_SHAPES = ((72, 512), (36, 1024), (18, 2048), (9, 4096), (4, 8192), (2, 16384), (1, 32768))
BRAM18_SHAPES = ((36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384))
LUTRAM_MAX_BITS = 1024  # a bank this small goes to distributed RAM (LUTs), not a block RAM
LUTRAM_BITS_PER_LUT = 32  # a LUT6 holds 64 bits; a second read port doubles it
FORWARD_OPS = ("LOAD_LUT", "LINEAR", "PATCHIFY", "ADD", "LAYERNORM", "GELU", "ATTENTION", "SELECT", "GATHER")
BACKWARD_OPS = 8  # about as many backward ops (their count is not fixed yet)


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


def bank_cost(depth: int, width: int) -> tuple[float, float]:
    """(BRAM36, LUTs) of one memory bank: the cheapest BRAM36/BRAM18 tiling (an 18K half counts
    0.5), or distributed RAM when the bank holds at most LUTRAM_MAX_BITS."""
    if depth * width <= LUTRAM_MAX_BITS:
        return 0.0, math.ceil(depth * width / LUTRAM_BITS_PER_LUT)
    full = min(math.ceil(width / w) * math.ceil(depth / d) for w, d in BRAM36_SHAPES)
    half = min(math.ceil(width / w) * math.ceil(depth / d) for w, d in BRAM18_SHAPES) / 2
    return min(full, half), 0.0


def buffer(component: str, banks: int, depth: int, width: int, assumption: str) -> Term:
    bram, lut = bank_cost(depth, width)
    return Term(
        component, 0, banks * bram, banks * lut, f"{banks} banks x {depth} deep x {width} bits; {assumption}"
    )


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


def estimate(cfg: dict[str, int], maxi: dict[str, dict[str, int]]) -> list[Term]:
    """Every component's (DSP, BRAM36, LUT) for the configuration ``cfg`` (config.h without CFG_)."""
    rows, cols, keys, lanes = cfg["MC_ROWS"], cfg["MC_COLS"], cfg["ATTN_KEYS"], cfg["VU_LANES"]
    tokens, dim, heads, k_max = cfg["MAX_TOKENS"], cfg["MAX_DIM"], cfg["MAX_HEADS"], cfg["MAX_K"]
    row_max = max(dim, cfg["MAX_HIDDEN"])  # the widest row the vector unit sees (LayerNorm: C, GELU: hidden)
    axi = cfg["AXI_BITS"]
    mc_macs, attn_macs = rows * cols, keys * dim
    t: list[Term] = []

    # ---- arithmetic
    t.append(
        Term(
            "matrix core (shared with the attention row engine)",
            max(mc_macs, attn_macs),
            0,
            24 * max(mc_macs, attn_macs) + 250 * cols,
            f"one 16x16 MAC with 48-bit accumulate per DSP48E2: linear {rows}x{cols} = {mc_macs}, "
            f"attention {keys} keys x {dim} channels = {attn_macs}; the engine has ONE matrix core, so the "
            "larger mapping counts, not the sum (this holds only if both ops call one non-inlined MAC-array "
            f"function; two separate arrays would need {mc_macs + attn_macs} DSPs). Sums over a head's "
            "channels use the DSP cascade. LUTs: 24 per MAC (2:1 operand muxes for the two mappings, "
            "accumulator control), 250 per output column (bias add, rounding shift, saturation)",
        )
    )
    ln = dsp_per_product(26, 26) + dsp_per_product(26, 25) + dsp_per_product(22, 16)
    sm = dsp_per_product(18, 7) + dsp_per_product(25, 25)
    ge = dsp_per_product(18, 7)
    t.append(
        Term(
            "vector unit, forward",
            lanes * (ln + sm + ge),
            0,
            lanes * 2900,
            f"{lanes} lanes; per lane LayerNorm d*d (26x26 bits), d*r (26x25), n*gamma (22x16) = {ln} "
            f"DSP, softmax exp interpolation (18x7) and e*recip (25x25) = {sm}, GELU interpolation = {ge} "
            "(widths from docs/fixed_point.md; a wide_t x wide_t product would cost 12); add and "
            "requantisation are shifts. LUTs: 2900 per lane (64-bit adders, rounding shifters, saturation)",
        )
    )
    ln_b = dsp_per_product(16, 16) + dsp_per_product(22, 22) + dsp_per_product(26, 25)
    sm_b, ge_b = dsp_per_product(16, 32), dsp_per_product(18, 7) + dsp_per_product(16, 17)
    t.append(
        Term(
            "vector unit, backward",
            lanes * (ln_b + sm_b + ge_b),
            0,
            lanes * 2000,
            f"{lanes} lanes; per lane LayerNorm backward dy*gamma, n*dn, r*(...) = {ln_b} DSP, softmax "
            f"backward p*(dp - sum) = {sm_b}, GELU gradient interpolation and dy*g' = {ge_b}; the backward "
            "matmuls (dX, dW) run on the matrix core. LUTs: 2000 per lane",
        )
    )
    t.append(
        Term(
            "row-wise scalar units",
            2 * dsp_per_product(26, 8),
            0,
            2 * 5000 + 2 * 600,
            "rsqrt and recip table interpolation once per row (26x8 bits); two pipelined 64-bit dividers for "
            "LayerNorm's mean and variance (rdiv), 5000 LUTs each; mantissa and leading-one logic 600 each",
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
    n_ops = len(FORWARD_OPS)
    t.append(
        Term(
            "op control and address generation",
            0,
            0,
            (n_ops + BACKWARD_OPS) * 1500,
            f"{n_ops} forward ops and about {BACKWARD_OPS} backward ops, 1500 LUTs each: loop FSM, row "
            "addresses, descriptor checks; their 32-bit address products bound to fabric (once per row, not "
            "per element, so no DSPs)",
        )
    )

    # ---- on-chip buffers
    x_depth = math.ceil(tokens / rows) * k_max
    t.append(
        buffer(
            "X buffer",
            rows,
            x_depth,
            16,
            f"MAX_TOKENS x MAX_K int16 split by token row into MC_ROWS banks ({rows} reads a cycle)",
        )
    )
    t.append(
        buffer(
            "W tile, double-buffered",
            cols,
            2 * k_max,
            16,
            f"MC_COLS x MAX_K int16, two tiles in one bank (ping-pong on the top address bit), {cols} reads "
            "a cycle",
        )
    )
    copies = max(1, math.ceil(keys / 2))
    for name in ("K", "V"):
        t.append(
            buffer(
                f"attention {name} replicas",
                copies,
                tokens,
                16 * dim,
                f"MAX_TOKENS rows of MAX_DIM int16 read whole; ATTN_KEYS/2 = {copies} copies, a dual-port "
                "copy serves two keys a cycle",
            )
        )
    score_banks, score_depth = heads * keys, math.ceil(tokens / keys)
    for name, width in (("scores", 48), ("exp values", 32), ("probabilities", 16)):
        t.append(
            buffer(
                f"attention row: {name}",
                score_banks,
                score_depth,
                width,
                f"one query row, MAX_HEADS x MAX_TOKENS, banked by head and key ({keys} keys a cycle)",
            )
        )
    t.append(
        buffer("attention map row (head-summed)", keys, score_depth, 32, "int32 per key, written per row")
    )
    for name, knots, copies_ in (
        ("exp", 2050, lanes),
        ("gelu", 2050, lanes),
        ("gelu_grad", 2050, lanes),
        ("recip", 258, 1),
        ("rsqrt", 770, 1),
    ):
        t.append(
            buffer(
                f"table {name}",
                copies_,
                knots,
                32,
                "one dual-port copy per lane (t[i] and t[i+1] each cycle)"
                if copies_ > 1
                else "one copy, used once per row",
            )
        )
    t.append(
        buffer(
            "vector-unit row buffers",
            6 * lanes,
            math.ceil(row_max / lanes),
            32,
            f"6 rows of max(MAX_DIM, MAX_HIDDEN) = {row_max} (LayerNorm x, d, y; backward dy, n, dx), "
            f"banked by VU_LANES, up to 32 bits; ops share them",
        )
    )
    t.append(
        buffer(
            "TA-Selector row buffers",
            2 * cfg["SEL_LANES"],
            math.ceil(tokens / cfg["SEL_LANES"]),
            32,
            "the score row and the kept-index row, int32, banked by SEL_LANES",
        )
    )
    t.append(
        buffer(
            "table load staging",
            cfg["I32_PER_WORD"],
            math.ceil(2050 / cfg["I32_PER_WORD"]),
            32,
            "OP_LOAD_LUT's knot buffer, banked by the int32 lanes of a beat",
        )
    )

    # ---- memory system and interconnect
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


def alternatives(cfg: dict[str, int], maxi: dict) -> dict[str, dict]:
    """Totals of a few one-define changes, to choose a config that fits (config.h is not edited)."""
    changes = {
        "ATTN_KEYS=2": {"ATTN_KEYS": 2},
        "VU_LANES=8": {"VU_LANES": 8},
        "MC_ROWS=28": {"MC_ROWS": 28},
        "MAX_K=768 (fc2 in two passes)": {"MAX_K": 768},
    }
    out = {}
    for name, change in changes.items():
        s = summarise(estimate({**cfg, **change}, maxi))
        out[name] = {
            "totals": s["totals"],
            "utilisation": s["utilisation"],
            "fits_with_margin": s["fits_with_margin"],
        }
    return out


def table(rep: dict) -> str:
    lines = [f"{'component':<52} {'DSP':>6} {'BRAM36':>7} {'LUT':>8}"]
    for c in rep["components"]:
        lines.append(f"{c['component']:<52} {c['dsp']:>6.0f} {c['bram36']:>7.1f} {c['lut']:>8.0f}")
    t, u = rep["totals"], rep["utilisation"]
    lines.append(f"{'total (estimate)':<52} {t['dsp']:>6.0f} {t['bram36']:>7.1f} {t['lut']:>8.0f}")
    d = rep["device"]
    lines.append(f"{'ZU9EG':<52} {d['dsp']:>6} {d['bram36']:>7} {d['lut']:>8}")
    lines.append(f"{'utilisation':<52} {u['dsp']:>6.0%} {u['bram36']:>7.0%} {u['lut']:>8.0%}")
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
            ok = "fits with margin" if alt["fits_with_margin"] else "still over"
            print(
                f"  with {name:<30} DSP {u['dsp']:.0%}  BRAM36 {u['bram36']:.0%}  LUT {u['lut']:.0%}  ({ok})"
            )
    print(f"wrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
