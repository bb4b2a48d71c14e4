"""The cycle model's building blocks: memory assumptions, loops, settings, one op's and one list's cost.

:mod:`.cycle_model` is the model (its docstring says how it prices a loop); this module holds
what the forward (cycle_model.py) and backward (cycle_model_backward.py) op functions share.
The two register their loops in :data:`LOOPS` and their op functions in :data:`OPS` on import.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from .abi import abi, config

# ---------------------------------------------------------------- memory-system assumptions


@dataclass(frozen=True)
class Memory:
    """How the model prices m_axi traffic. The ports are CFG_AXI_BITS wide at CFG_CLOCK_MHZ
    (128 bits at 150 MHz: 2.4 GB/s per port); the three numbers below are ASSUMPTIONS."""

    # long bursts into the ZCU102's PS DDR4 through an HP port sustain this fraction of one
    # beat per cycle (refresh, page misses, the interconnect), reads and writes alike
    efficiency: float = 0.9
    # cycles from a burst's address to its first data beat (PL -> HP port -> DDR controller ->
    # back, about 270 ns at 150 MHz); paid once per entry of a read loop
    read_latency: int = 40
    # cycles from a write burst's last beat to its response: the HLS m_axi adapter waits for
    # the response before the loop's region ends, so it is paid once per entry of a write loop
    write_latency: int = 30


DEFAULT_MEMORY = Memory()


@dataclass(frozen=True)
class Loop:
    """One loop of the kernels (or a sequential step, with no trips), as the model costs it.

    counter: the SIM_LOOP counter (abi.json name) the loop adds to, None when the C-sim does
    not count it. ddr: "read" / "write" when each iteration moves one m_axi beat ("copy": one
    read and one write on the two channels of a port).
    """

    label: str
    counter: str | None
    ii: float
    depth: int
    why: str
    ddr: str | None = None

    def ii_effective(self, mem: Memory) -> float:
        return max(self.ii, 1.0 / mem.efficiency) if self.ddr else self.ii

    def latency(self, mem: Memory) -> int:
        """AXI round trips paid per entry (0 for loops that do not touch DDR)."""
        return {
            "read": mem.read_latency,
            "write": mem.write_latency,
            "copy": mem.read_latency + mem.write_latency,
        }.get(self.ddr or "", 0)

    def split(self, trips: int, entries: int, mem: Memory) -> dict[str, float]:
        """Cycles as issue (trips x II), fill (entries x depth) and axi (entries x round trip)."""
        return {
            "issue": trips * self.ii_effective(mem),
            "fill": float(entries * self.depth),
            "axi": float(entries * self.latency(mem)),
        }

    def cycles(self, trips: int, entries: int, mem: Memory) -> float:
        return sum(self.split(trips, entries, mem).values())


def mem_loop(label: str, counter: str, ddr: str, where: str) -> Loop:
    """A LOAD_/STORE_I16/I32_BEATS loop of memory.h, named by its call site."""
    what = "load" if ddr == "read" else "store"
    return Loop(
        label,
        counter,
        1,
        2,
        f"memory.h {what} loop at {where}: II=1, one beat per cycle into/out of a buffer cyclic "
        "by the beat's lanes (memory.h); depth 2 (address, beat) is an assumption",
        ddr,
    )


# Every loop of the kernels the model knows, by label (filled by cycle_model and
# cycle_model_backward), and the op functions by opcode name.
LOOPS: dict[str, Loop] = {}
OPS: dict = {}


def register(loops: list[Loop], ops: dict) -> None:
    for lp in loops:
        if lp.label in LOOPS:
            raise ValueError(f"loop {lp.label} is in the cycle model twice")
        LOOPS[lp.label] = lp
    OPS.update(ops)


# ---------------------------------------------------------------- what the model is run with


@dataclass(frozen=True)
class Settings:
    """The engine configuration, memory assumptions and loop table one estimate uses.

    The defaults are the kernels as written: abi.json's config (config.h), :class:`Memory`,
    :data:`LOOPS`, one accumulator bank. What-if variants (bench/engine_cycles.py) change
    these and say so; acc_banks = 2 models a second accumulator bank in the matrix core (the
    requantise/store of a row tile overlapping the next tile's MACs), which the kernel does
    not have.
    """

    cfg: dict = field(default_factory=lambda: dict(config()))
    mem: Memory = DEFAULT_MEMORY
    loops: dict = field(default_factory=lambda: dict(LOOPS))
    acc_banks: int = 1

    @property
    def clock_mhz(self) -> float:
        return self.cfg["CLOCK_MHZ"]


# ---------------------------------------------------------------- descriptors


def ceil_div(a: int, b: int) -> int:
    """ceil(a / b) for positive b."""
    return -(-a // b)


@dataclass(frozen=True)
class Desc:
    """A descriptor's fields by abi.h name (unsigned), its opcode name and flag names."""

    kind: str
    flags: frozenset[str]
    f: dict[str, int]

    @classmethod
    def decode(cls, words: np.ndarray) -> Desc:
        a = abi()
        w = np.asarray(words, dtype=np.uint32).reshape(-1)
        if w.size != a["abi"]["DESC_WORDS"]:
            raise ValueError(f"a descriptor has {a['abi']['DESC_WORDS']} words, got {w.size}")
        op = int(w[a["desc_words"]["OP"]])
        names = {v: k for k, v in a["opcodes"].items()}
        code = op & 0xFF
        if code not in names:
            raise ValueError(f"opcode {code} is not one of abi.h's")
        flags = frozenset(k for k, bit in a["flags"].items() if (op >> 8) & bit)
        return cls(names[code], flags, {k: int(w[i]) for k, i in a["desc_words"].items()})


# ---------------------------------------------------------------- one op's cost


@dataclass
class OpCost:
    """What one descriptor costs: loop uses, cycles hidden by overlap, MACs.

    settings: the configuration, memory assumptions and loop table it was costed with.
    """

    kind: str
    name: str = ""
    settings: Settings = field(default_factory=Settings)
    uses: dict[str, list[int]] = field(default_factory=dict)  # loop label -> [trips, entries]
    hidden: float = 0.0  # cycles that overlap other work (the linear's weight ping-pong)
    macs: int = 0

    @property
    def cfg(self) -> dict:
        return self.settings.cfg

    def _loop(self, label: str) -> Loop:
        return self.settings.loops[label]

    def add(self, label: str, trips: int, entries: int = 1) -> None:
        if label not in self.settings.loops:
            raise KeyError(f"loop {label} is not in the cycle model's table")
        u = self.uses.setdefault(label, [0, 0])
        u[0] += int(trips)
        u[1] += int(entries)

    def loop_cycles(self) -> dict[str, float]:
        """Cycles of each loop as if run alone (before overlap)."""
        return {k: self._loop(k).cycles(t, e, self.settings.mem) for k, (t, e) in self.uses.items()}

    def split(self) -> dict[str, float]:
        """Cycles as issue / fill / axi (see :meth:`Loop.split`) and -hidden."""
        out = {"issue": 0.0, "fill": 0.0, "axi": 0.0}
        for k, (t, e) in self.uses.items():
            for part, cyc in self._loop(k).split(t, e, self.settings.mem).items():
                out[part] += cyc
        out["overlap"] = -self.hidden
        return out

    @property
    def cycles(self) -> float:
        return sum(self.loop_cycles().values()) - self.hidden

    def counters(self) -> dict[str, tuple[int, int]]:
        """(trips, entries) per C-sim counter name, summed over the loops that feed it."""
        out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for label, (t, e) in self.uses.items():
            c = self._loop(label).counter
            if c is not None:
                out[c][0] += t
                out[c][1] += e
        return {k: (v[0], v[1]) for k, v in out.items()}

    def uses_cycles(self, uses: list[tuple[str, int, int]]) -> float:
        return sum(self._loop(label).cycles(t, e, self.settings.mem) for label, t, e in uses)


def op_cost(words: np.ndarray, name: str = "", settings: Settings | None = None) -> OpCost:
    """The cost of one descriptor ((DESC_WORDS,) uint32), its fetch and dispatch included.

    settings: default the kernels as written (:class:`Settings`). The descriptor must be one
    the engine accepts (the model does not repeat the op's checks).
    """
    d = Desc.decode(words)
    if d.kind not in OPS:
        raise ValueError(f"the cycle model has no loops for op {d.kind}")
    c = OpCost(d.kind, name, settings or Settings())
    c.add("FETCH_DESC", abi()["abi"]["DESC_BYTES"] // c.cfg["AXI_BYTES"])
    c.add("OP_SETUP", 0)
    OPS[d.kind](d, c)
    return c


# ---------------------------------------------------------------- a whole descriptor list


@dataclass
class ProgramCost:
    """The cost of one start of the engine on a descriptor list (ops run one after the other)."""

    ops: list[OpCost]

    @property
    def cycles(self) -> float:
        return sum(o.cycles for o in self.ops)

    @property
    def clock_mhz(self) -> float:
        return self.ops[0].settings.clock_mhz if self.ops else config()["CLOCK_MHZ"]

    @property
    def ms(self) -> float:
        return self.cycles / (self.clock_mhz * 1e3)

    @property
    def macs(self) -> int:
        return sum(o.macs for o in self.ops)

    def by_kind(self) -> dict[str, float]:
        """Cycles per op kind (after overlap)."""
        out: dict[str, float] = defaultdict(float)
        for o in self.ops:
            out[o.kind] += o.cycles
        return dict(out)

    def by_loop(self) -> dict[str, float]:
        """Cycles per loop label (before overlap), plus 'overlap (hidden)' as a negative entry."""
        out: dict[str, float] = defaultdict(float)
        for o in self.ops:
            for label, cyc in o.loop_cycles().items():
                out[label] += cyc
            out["overlap (hidden)"] -= o.hidden
        return dict(out)

    def split(self) -> dict[str, float]:
        """Cycles as issue / fill / axi / overlap, summed over the ops."""
        out: dict[str, float] = defaultdict(float)
        for o in self.ops:
            for k, v in o.split().items():
                out[k] += v
        return dict(out)

    def counters(self) -> dict[str, tuple[int, int]]:
        out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for o in self.ops:
            for k, (t, e) in o.counters().items():
                out[k][0] += t
                out[k][1] += e
        return {k: (v[0], v[1]) for k, v in out.items()}

    def mac_array_bound_ms(self) -> float:
        """The lower bound of the MAC array: every MAC of the list on MC_ROWS x MC_COLS multipliers."""
        cfg = self.ops[0].cfg
        return self.macs / (cfg["MC_ROWS"] * cfg["MC_COLS"]) / (self.clock_mhz * 1e3)


def program_cost(
    descs: np.ndarray, names: list[str] | None = None, settings: Settings | None = None
) -> ProgramCost:
    """The cost of a descriptor list ((n, DESC_WORDS) uint32); names label the ops (optional)."""
    descs = np.asarray(descs, dtype=np.uint32).reshape(-1, abi()["abi"]["DESC_WORDS"])
    names = names or [""] * len(descs)
    settings = settings or Settings()
    return ProgramCost([op_cost(w, nm, settings) for w, nm in zip(descs, names, strict=True)])
