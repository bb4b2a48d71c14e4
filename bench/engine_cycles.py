"""The engine's estimated latency against its targets, and what would change it (cycle model, no hardware).

    python bench/engine_cycles.py [--output bench/results/engine_cycles.json]

For DeiT-T and DeiT-S at 224x224, dense and Tri-Level/0.7 (attention keep 0.3), the cycle model
(host/trilevel_host/engine/cycle_model.py) prices the engine's own programs, inference and one
training step: first the kernels as written, then what-if variants, each one change to the
kernels or to config.h that the model can express, alone and added up in order. Every figure
is an ESTIMATE at the engine clock; the what-ifs are proposals, not the code. Targets (issue
#12): DeiT-T dense inference <= 5.0 ms, Tri-Level/0.7 <= 3.5 ms, per-sample training <= 15 ms
dense; DeiT-S in proportion to its dense MACs. Writes the JSON and a markdown table beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "host")]

from trilevel_host.compare import (  # noqa: E402
    MODELS,
    engine_program,
    engine_train_program,
    forward_cost,
    train_cost,
)
from trilevel_host.engine import cycle_model as cm  # noqa: E402

# DeiT-T targets; DeiT-S's are these times its dense MACs over DeiT-T's. None: no target given.
TINY_TARGET_MS = {("inference", 1.0): 5.0, ("inference", 0.7): 3.5, ("training", 1.0): 15.0}

# Loops the kernels leave without a pragma whose lanes are registers (complete partitions): an
# UNROLL makes each one cycle per entry instead of one per trip.
LANE_LOOPS = (
    "ATTN_ROW_INIT", "ATTN_ACC_INIT", "ATTN_CTX", "LN_CLEAR", "LBW_DB_CLEAR", "ATB_ROWDOT_CLEAR",
    "ATB_DQ_CLEAR", "ATB_DQ_MAX", "ATB_DQ_OUT", "ATB_KV_REQUANT", "SC_ZERO",
)  # fmt: skip

# The kernels as written under other memory assumptions: ideal (no round trips), the default,
# and a pessimistic one (75% efficiency, as UG585 quotes for the Zynq-7000 DDR controller,
# and twice the round trips).
MEMORY_SENSITIVITY = (cm.Memory(0.9, 0, 0), cm.Memory(), cm.Memory(0.75, 80, 60))

WEIGHT_LOOPS = ("LIN_LOAD_W", "LBX_LOAD_W")  # the linear weights streamed from wmem


def _loops(s: cm.Settings, changes: dict[str, tuple[float, int]]) -> cm.Settings:
    """``s`` with some loops' (II, depth) replaced."""
    table = dict(s.loops)
    for label, (ii, depth) in changes.items():
        table[label] = dataclasses.replace(table[label], ii=ii, depth=depth)
    return dataclasses.replace(s, loops=table)


def what_ifs() -> list[tuple[str, str, Callable[[cm.Settings], cm.Settings]]]:
    """(name, what it changes, Settings -> Settings), in the order they are added up."""
    return [
        (
            "unroll the lane loops",
            "#pragma HLS UNROLL on the loops without a pragma over register lanes (attention.h "
            "ATTN_ROW_INIT, ATTN_ACC_INIT, ATTN_CTX; attention_backward.h's dq / dk / dv clears, "
            "maxima and requantisations; scatter.h's zero row; the LayerNorm and db clears): one "
            "cycle each instead of one per trip (CFG_MAX_DIM trips per row for most)",
            lambda s: _loops(s, {label: (0, 1) for label in LANE_LOOPS}),
        ),
        (
            "pipelined tile drains",
            "linear_backward.h LBX_DRAIN / LBW_DRAIN pipelined at II=1 with row_max as the comparator "
            "tree and the requantisation across MC_COLS lanes (as their comments describe): one "
            "cycle per tile row instead of MC_COLS",
            lambda s: _loops(s, {"LBX_DRAIN_LANES": (0, 0), "LBW_DRAIN_LANES": (0, 0)}),
        ),
        (
            "layernorm without dividers",
            "LayerNorm's (and its backward's) 64-bit divisions per row by K replaced by a multiply "
            "with a reciprocal of K (exact with a correction step, ~8 cycles)",
            lambda s: _loops(s, {"LN_DIV": (0, 8), "LNB_DIV": (0, 8)}),
        ),
        (
            "second accumulator bank",
            "the matrix core (forward LINEAR) requantises and stores a row tile while the next row "
            "tile accumulates (a second set of MC_ROWS x MC_COLS accumulators)",
            lambda s: dataclasses.replace(s, acc_banks=2),
        ),
        (
            "MC 16 x 128",
            "config.h CFG_MC_ROWS 16, CFG_MC_COLS 128 (same 2048 multipliers): half the column tiles, "
            "so half the output-row bursts and requantisation entries; twice the W banks",
            lambda s: dataclasses.replace(s, cfg={**s.cfg, "MC_ROWS": 16, "MC_COLS": 128}),
        ),
        (
            "SEL_LANES 128",
            "config.h CFG_SEL_LANES 128: the TA-Selector's rank counting compares 128 candidates per "
            "cycle (comparators in LUTs; the connection-level top-k of every kept row dominates SELECT)",
            lambda s: dataclasses.replace(s, cfg={**s.cfg, "SEL_LANES": 128}),
        ),
        (
            "AXI round trips hidden",
            "every burst's address issued ahead of its use (prefetch of the next row / DATAFLOW "
            "between load, compute and store; no wait for write responses per row)",
            lambda s: dataclasses.replace(s, mem=dataclasses.replace(s.mem, read_latency=0, write_latency=0)),
        ),
    ]


def _ms(cost: cm.ProgramCost, cycles: float) -> float:
    return cycles / (cost.clock_mhz * 1e3)


def ddr_floor_ms(cost: cm.ProgramCost, labels: tuple[str, ...] | None = None) -> float:
    """Port time of the DDR loops (all, or those ``labels``) at the stated efficiency, no round trips."""
    total = 0.0
    for o in cost.ops:
        for label, (trips, _) in o.uses.items():
            lp = o.settings.loops[label]
            if lp.ddr and (labels is None or label in labels):
                total += trips * lp.ii_effective(o.settings.mem)
    return _ms(cost, total)


def ddr_by_loop_ms(cost: cm.ProgramCost) -> dict[str, float]:
    """Port time of each DDR loop's beats (no round trips), the loops as written."""
    out: dict[str, float] = {}
    for o in cost.ops:
        for label, (trips, _) in o.uses.items():
            lp = o.settings.loops[label]
            if lp.ddr:
                out[label] = out.get(label, 0.0) + _ms(cost, trips * lp.ii_effective(o.settings.mem))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", default=str(ROOT / "bench/results/engine_cycles.json"))
    args = ap.parse_args(argv)

    base = cm.Settings()
    tiny, small = MODELS
    progs, costers = {}, {"inference": forward_cost, "training": train_cost}
    for m in MODELS:
        for k in (1.0, 0.7):
            progs[("inference", m, k)] = engine_program(m, k)
            progs[("training", m, k)] = engine_train_program(m, k)
    costs = {key: costers[key[0]](p, base) for key, p in progs.items()}
    scale = {tiny: 1.0, small: costs[("inference", small, 1.0)].macs / costs[("inference", tiny, 1.0)].macs}
    results = {"memory_assumptions": dataclasses.asdict(base.mem), "rows": []}
    for key, prog in progs.items():
        what, model, keep = key
        cost = costs[key]
        target = TINY_TARGET_MS.get((what, keep))
        row = {
            "what": what,
            "model": model,
            "keep": keep,
            "target_ms": None if target is None else target * scale[model],
            "as_written_ms": cost.ms,
            "as_written_split_ms": {k: _ms(cost, v) for k, v in cost.split().items()},
            "mac_array_bound_ms": cost.mac_array_bound_ms(),
            "weights_over_one_port_ms": ddr_floor_ms(cost, WEIGHT_LOOPS),
            "all_ddr_beats_over_one_port_ms": ddr_floor_ms(cost),
            "memory_sensitivity_ms": {
                f"efficiency {m.efficiency}, read {m.read_latency}, write {m.write_latency} cycles": costers[
                    what
                ](prog, dataclasses.replace(base, mem=m)).ms
                for m in MEMORY_SENSITIVITY
            },
            "what_ifs": [],
        }
        cumulative = base
        for name, change, fn in what_ifs():
            alone = costers[what](prog, fn(base)).ms
            cumulative = fn(cumulative)
            total = costers[what](prog, cumulative)
            row["what_ifs"].append(
                {"name": name, "change": change, "alone_ms": alone, "cumulative_ms": total.ms}
            )
        row["after_all_top_loops_ms"] = {
            k: _ms(total, v) for k, v in sorted(total.by_loop().items(), key=lambda kv: -abs(kv[1]))[:8]
        }
        row["ddr_beats_by_loop_ms"] = {
            k: v for k, v in sorted(ddr_by_loop_ms(cost).items(), key=lambda kv: -kv[1])[:8]
        }
        results["rows"].append(row)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(results))
    print(out.with_suffix(".md").read_text())
    return 0


def _col(r: dict) -> str:
    return f"{MODELS[r['model']]} {'dense' if r['keep'] >= 1 else r['keep']} {r['what']}"


def markdown(results: dict) -> str:
    rows = results["rows"]
    cols = " | ".join(_col(r) for r in rows)
    sep = "|---|" + "---|" * len(rows)

    def line(name: str, cells) -> str:
        return f"| {name} | " + " | ".join(cells) + " |"

    lines = [
        "# Engine latency estimates and what-ifs (cycle model, ESTIMATED, not measured)",
        "",
        f"Memory assumptions: {results['memory_assumptions']}. Cells: ms per sample (inference: one "
        "image; training: one SGD step on one image), what-ifs as alone / cumulative. Targets: "
        "DeiT-T inference <= 5.0 ms dense, <= 3.5 ms at 0.7, training <= 15 ms dense; DeiT-S scaled "
        "by its dense MACs. 'weights over one port': the linear weights streamed over one 128-bit "
        "m_axi port at the stated efficiency; 'all DDR beats': every DDR loop's beats on one port, "
        "no round trips (the two HP ports halve it at best).",
        "",
        f"| what-if (added in order) | {cols} |",
        sep,
        line("kernels as written", (f"{r['as_written_ms']:.2f}" for r in rows)),
    ]
    for i, w in enumerate(rows[0]["what_ifs"]):
        cells = (
            f"{r['what_ifs'][i]['alone_ms']:.2f} / {r['what_ifs'][i]['cumulative_ms']:.2f}" for r in rows
        )
        lines.append(line("+ " + w["name"], cells))
    lines.append(line("MAC-array bound", (f"{r['mac_array_bound_ms']:.2f}" for r in rows)))
    lines.append(line("weights over one port", (f"{r['weights_over_one_port_ms']:.2f}" for r in rows)))
    lines.append(
        line("all DDR beats over one port", (f"{r['all_ddr_beats_over_one_port_ms']:.2f}" for r in rows))
    )
    lines.append(line("target", ("" if r["target_ms"] is None else f"{r['target_ms']:.2f}" for r in rows)))
    lines += ["", "The kernels as written under other memory assumptions (ms):", ""]
    lines += [f"| memory assumption | {cols} |", sep]
    for name in rows[0]["memory_sensitivity_ms"]:
        lines.append(line(name, (f"{r['memory_sensitivity_ms'][name]:.2f}" for r in rows)))
    lines += ["", "What each what-if changes:", ""]
    lines += [f"- **{w['name']}**: {w['change']}" for w in rows[0]["what_ifs"]]
    for r in rows:
        lines += ["", f"{_col(r)}: after all what-ifs, top loops (ms): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in r["after_all_top_loops_ms"].items())
                  + "; DDR beats by loop as written (ms on one port): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in r["ddr_beats_by_loop_ms"].items())]  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
