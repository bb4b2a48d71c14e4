"""A model package as an engine program: the arena layout and the descriptor lists.

:func:`build_program` is pure (it reads the package's arrays and nothing else), so the bytes
it lays out are the same for the C-sim and the board. The arena holds, in this order: every
weight (int16, 2-D: qkv (3C, C), the patch-embedding weight as (C, Cin p p), pos_embed (N, C),
biases and LayerNorm parameters as (1, n) rows), the five tables' knots (int32), the input
image (Cin H rows of W), one tensor per layer output, and last the two descriptor lists.
Layer outputs are named like the golden vectors (``patch_embed.out``, ``blocks.3.attn.qkv.out``, ``head.out``, ...).
A selector block also has ``blocks.i.attn.map`` (the head-summed score map, int32),
``blocks.i.keep_idx`` (kept original patch ids), ``blocks.i.connections`` (when R_A < 1) and
``blocks.i.resid1.kept`` (the gathered residual stream).

Two descriptor lists: ``setup`` loads the tables (run once per load: they stay on chip) and
``forward`` runs one inference. Tags number the descriptors of both lists from 1, so an error
tag names one op (:meth:`EngineProgram.op_for_tag`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..package import Package
from ..reference.model import ModelConfig
from . import ops
from .abi import abi, config
from .arena import Arena, Tensor
from .limits import check_knots, check_supported
from .ops import Op, UnsupportedPackage

LUT_ORDER = ("exp", "gelu", "gelu_grad", "recip", "rsqrt")  # table ids 0..4 of abi.h


@dataclass
class EngineProgram:
    """The arena image of one package (weights, tables, descriptors) and its op lists."""

    cfg: ModelConfig
    arena: Arena  # layout; arena.buf is the image to write to a device before the first run
    setup: list[Op]
    forward: list[Op]
    formats: dict[str, int]  # activation name -> frac_bits
    keep_idx: list[str] = field(default_factory=list)  # per selector, arena tensor names
    connections: list[str | None] = field(default_factory=list)

    @property
    def image(self) -> np.ndarray:
        """(arena bytes,) uint8: everything but the input and the activations (zeros)."""
        return self.arena.buf

    def program(self, which: str) -> tuple[int, int]:
        """(byte offset, descriptor count) of the ``setup`` or ``forward`` list."""
        t = self.arena.tensors[f"program.{which}"]
        return t.addr, t.rows

    def op_for_tag(self, tag: int) -> Op | None:
        ops_ = self.setup + self.forward
        return ops_[tag - 1] if 1 <= tag <= len(ops_) else None

    def describe_tag(self, tag: int) -> str:
        op = self.op_for_tag(tag)
        return f"op {tag} ({op.kind} {op.name})" if op else f"op tag {tag} (not in this program)"


def engine_shape(name: str, a: np.ndarray) -> np.ndarray:
    """A package weight in the 2-D layout the ops read (see the module docstring)."""
    if a.ndim == 1:
        return a.reshape(1, -1)
    if name in ("pos_embed", "cls_token"):
        return a.reshape(-1, a.shape[-1])
    return a.reshape(a.shape[0], -1)


class _Builder:
    """Allocates tensors and appends ops in forward order."""

    def __init__(self, pkg: Package, cfg: ModelConfig):
        self.pkg, self.cfg = pkg, cfg
        self.arena = Arena()
        self.wfmt = {k: v["frac_bits"] for k, v in pkg.manifest["weights"].items()}
        self.afmt = {k: v["frac_bits"] for k, v in pkg.manifest["activations"].items()}
        self.writes: list[tuple[Tensor, np.ndarray]] = []
        self.forward: list[Op] = []

    def data(self, name: str, values: np.ndarray, dtype) -> Tensor:
        t = self.arena.alloc(name, values.shape[0], values.shape[1], dtype)
        self.writes.append((t, values))
        return t

    def act(self, name: str, rows: int, cols: int, dtype=np.int16) -> Tensor:
        return self.arena.alloc(name, rows, cols, dtype)

    def w(self, key: str) -> Tensor:
        return self.arena.tensors[key]

    def f(self, name: str) -> int:
        """frac_bits of an activation (or of a weight, by its timm key)."""
        if name in self.afmt:
            return self.afmt[name]
        if name in self.wfmt:
            return self.wfmt[name]
        raise UnsupportedPackage(f"the manifest has no format for {name!r}")

    # ---------------------------------------------------------------- layer groups
    def linear(self, prefix: str, x: Tensor, fx: int, out: str) -> Tensor:
        """LINEAR with the weights ``prefix.weight`` / ``prefix.bias``; allocates ``out``."""
        w = self.w(prefix + ".weight")
        bkey = prefix + ".bias"
        b = self.arena.tensors.get(bkey)
        y = self.act(out, x.rows, w.rows)
        fb = self.wfmt[bkey] if b is not None else None
        self.forward.append(
            ops.linear(prefix, x, w, b, y, fx, self.wfmt[prefix + ".weight"], fb, self.f(out))
        )
        return y

    def layernorm(self, prefix: str, x: Tensor, fx: int, out: str, rows: int) -> Tensor:
        g, b = prefix + ".weight", prefix + ".bias"
        y = self.act(out, rows, x.cols)
        self.forward.append(
            ops.layernorm(
                prefix,
                x,
                self.w(g),
                self.w(b),
                y,
                fx,
                self.wfmt[g],
                self.wfmt[b],
                self.f(out),
                self.cfg.ln_eps,
            )
        )
        return y

    def embed(self, image: Tensor) -> Tensor:
        """PATCHIFY, the patch-embedding LINEAR, and the [CLS] / position ADDs -> embed.out (N, C)."""
        cfg, pre = self.cfg, self.cfg.num_prefix_tokens
        patches = self.act("patch_embed.patches", cfg.num_patches, cfg.in_chans * cfg.patch_size**2)
        self.forward.append(
            ops.patchify("patch_embed.patchify", image, patches, cfg.in_chans, cfg.img_size, cfg.patch_size)
        )
        pe = self.linear("patch_embed.proj", patches, self.f("input"), "patch_embed.out")
        h = self.act("embed.out", pre + cfg.num_patches, cfg.embed_dim)
        pos, fpos, fy = self.w("pos_embed"), self.wfmt["pos_embed"], self.f("embed.out")
        cls_ = ops.add("embed.cls", self.w("cls_token"), ops.rows(pos, 0, pre), ops.rows(h, 0, pre),
                       self.wfmt["cls_token"], fpos, fy)  # fmt: skip
        patch = ops.add("embed.patches", pe, ops.rows(pos, pre, cfg.num_patches),
                        ops.rows(h, pre, cfg.num_patches), self.f("patch_embed.out"), fpos, fy)  # fmt: skip
        self.forward += [cls_, patch]
        return h

    def block(self, i: int, h: Tensor, fh: int, state: dict) -> tuple[Tensor, int]:
        """One transformer block (plus its TA-Selector when i is a location)."""
        cfg, pre, p = self.cfg, self.cfg.num_prefix_tokens, f"blocks.{i}"
        M = h.rows
        n1 = self.layernorm(p + ".norm1", h, fh, p + ".norm1.out", M)
        qkv = self.linear(p + ".attn.qkv", n1, self.f(p + ".norm1.out"), p + ".attn.qkv.out")
        ctx = self.act(p + ".attn.ctx", M, cfg.embed_dim)
        smap = self.act(p + ".attn.map", M, M, np.int32) if i in state["plan"] else None
        fq = self.f(p + ".attn.qkv.out")
        self.forward.append(
            ops.attention(
                p + ".attn", qkv, ctx, cfg.num_heads, pre, fq, self.f(p + ".attn.ctx"), state["conn"], smap
            )
        )
        proj = self.linear(p + ".attn.proj", ctx, self.f(p + ".attn.ctx"), p + ".attn.proj.out")
        r1 = self.act(p + ".resid1.out", M, cfg.embed_dim)
        fr1 = self.f(p + ".resid1.out")
        self.forward.append(ops.add(p + ".resid1", h, proj, r1, fh, self.f(p + ".attn.proj.out"), fr1))
        if smap is not None:
            r1 = self.selector(i, smap, r1, state)
        n2 = self.layernorm(p + ".norm2", r1, fr1, p + ".norm2.out", r1.rows)
        f1 = self.linear(p + ".mlp.fc1", n2, self.f(p + ".norm2.out"), p + ".mlp.fc1.out")
        g = self.act(p + ".mlp.act.out", f1.rows, f1.cols)
        self.forward.append(
            ops.gelu(p + ".mlp.act", f1, g, self.f(p + ".mlp.fc1.out"), self.f(p + ".mlp.act.out"))
        )
        f2 = self.linear(p + ".mlp.fc2", g, self.f(p + ".mlp.act.out"), p + ".mlp.fc2.out")
        out = self.act(p + ".out", r1.rows, cfg.embed_dim)
        self.forward.append(
            ops.add(p + ".out", r1, f2, out, fr1, self.f(p + ".mlp.fc2.out"), self.f(p + ".out"))
        )
        return out, self.f(p + ".out")

    def selector(self, i: int, smap: Tensor, r1: Tensor, state: dict) -> Tensor:
        """SELECT on the block's score map, then GATHER the kept rows of the residual stream."""
        pre, p = self.cfg.num_prefix_tokens, f"blocks.{i}"
        n_keep, n_conn = state["plan"][i]
        keep = self.act(p + ".keep_idx", 1, n_keep, np.int32)
        conn = self.act(p + ".connections", n_keep, n_conn, np.int32) if n_conn is not None else None
        origin = state["origin"]
        if origin is None:  # first selector: the kept slots are the original patch ids
            self.forward.append(ops.select(p + ".select", smap, pre, keep, conn))
            slots = keep
        else:
            slots = self.act(p + ".select.slots", 1, n_keep, np.int32)
            self.forward.append(ops.select(p + ".select", smap, pre, slots, conn, origin, keep))
        kept = self.act(p + ".resid1.kept", pre + n_keep, r1.cols)
        self.forward.append(ops.gather(p + ".gather", r1, slots, kept, pre))
        state.update(origin=keep, conn=conn)
        state["keep_idx"].append(p + ".keep_idx")
        state["connections"].append(p + ".connections" if conn is not None else None)
        return kept


def lay_out_forward(b: _Builder) -> tuple[list[Op], dict]:
    """Weights and tables into ``b``'s arena and the forward's ops into ``b.forward``.

    Returns the ``setup`` list (the table loads) and the selector state (kept-index and
    connection tensor names per selector)."""
    pkg, cfg = b.pkg, b.cfg
    for key in pkg.manifest["weights"]:
        b.data(key, engine_shape(key, pkg.tensor(key)), np.int16)
    setup = []
    for name in LUT_ORDER:
        knots = pkg.lut(name)
        check_knots(name, knots)
        setup.append(ops.load_lut(name, b.data(f"lut.{name}", knots.reshape(1, -1), np.int32)))
    image = b.act("input", cfg.in_chans * cfg.img_size, cfg.img_size)
    h, fh = b.embed(image), b.f("embed.out")
    state = dict(plan=dict(zip(cfg.locations, cfg.stage_plan(), strict=True)), origin=None, conn=None,
                 keep_idx=[], connections=[])  # fmt: skip
    for i in range(cfg.depth):
        h, fh = b.block(i, h, fh, state)
    nf = b.layernorm("norm", ops.rows(h, 0, 1), fh, "norm.out", 1)  # the head reads [CLS] only
    b.linear("head", nf, b.f("norm.out"), "head.out")
    return setup, state


def finish(b: _Builder, lists: dict[str, list[Op]], what: str) -> None:
    """Check the longest list against the engine, place every list (tags numbered across them, in
    order) and the arena image; ``what`` names the program in errors."""
    n_max = config()["MAX_DESCRIPTORS"]
    longest = max(len(v) for v in lists.values())
    if longest > n_max:
        raise UnsupportedPackage(f"the {what} needs {longest} descriptors, the engine walks at most {n_max}")
    words = abi()["abi"]["DESC_WORDS"]
    tag = 1
    for which, op_list in lists.items():
        descs = np.stack([op.descriptor(tag + k) for k, op in enumerate(op_list)])
        b.data(f"program.{which}", descs.reshape(len(op_list), words), np.uint32)
        tag += len(op_list)
    if b.arena.size >= 1 << 32:
        raise UnsupportedPackage(f"the arena needs {b.arena.size} bytes; the engine addresses 4 GiB")
    b.arena.freeze()
    for t, values in b.writes:
        b.arena.write(t, values)


def build_program(pkg: Package) -> EngineProgram:
    """The arena image and descriptor lists of ``pkg``; raises UnsupportedPackage if the engine cannot run it."""
    cfg = ModelConfig.from_manifest(pkg.manifest)
    check_supported(pkg.manifest, cfg)
    b = _Builder(pkg, cfg)
    setup, state = lay_out_forward(b)
    finish(b, {"setup": setup, "forward": b.forward}, "forward")
    return EngineProgram(
        cfg, b.arena, setup, b.forward, dict(b.afmt), state["keep_idx"], state["connections"]
    )
