"""A model package as a training program: forward with caches, backward, SGD, one sample per start.

:func:`build_train_program` lays out everything :func:`.program.build_program` does, and adds
what one training step of ``reference/model.py`` needs (``train_step`` on a batch of one):

- the forward's caches: every LAYERNORM writes its (n, (r, sh)) cache (flag CACHE), every
  ATTENTION its probabilities (flag PROBS, ``blocks.i.attn.probs``);
- the label (``label``, int32), the format table (``grad.formats``), one gradient tensor per
  activation gradient and per weight (``grad.<name>``), and an int32 master copy of every
  weight (``master.<key>``, initialised to the weight << 16);
- a third descriptor list, ``train``: the forward with caches, the backward ops in the order
  of ``ops_backward.model_backward``, then one SGD per weight (after the backward, which reads
  the weights as they were in the forward).

Gradient formats are chosen by the engine at run time and left in the format table; every
weight gradient keeps its own slot (:attr:`TrainProgram.grads`), intermediate gradients give
theirs back once their block is done.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..package import Package
from ..reference.model import LR_FRAC, MASTER_EXTRA_FRAC, ModelConfig
from . import ops_backward as B
from .abi import abi
from .arena import Tensor
from .limits import check_supported
from .ops import Op, UnsupportedPackage
from .ops_backward import Grad
from .program import EngineProgram, _Builder, engine_shape, finish, lay_out_forward


@dataclass
class TrainProgram(EngineProgram):
    """An :class:`EngineProgram` whose arena also holds the training step (``program('train')``)."""

    backward: list[Op] = field(default_factory=list)  # backward ops, then the SGD updates
    grads: dict[str, Grad] = field(default_factory=dict)  # weight key or "loss.dlogits" -> gradient
    table: Tensor | None = None  # the format table
    lr_q: int = 0  # learning rate at LR_FRAC fractional bits

    def op_for_tag(self, tag: int) -> Op | None:
        ops_ = self.setup + self.forward + self.forward + self.backward  # setup, forward, train
        return ops_[tag - 1] if 1 <= tag <= len(ops_) else None


class _Slots:
    """Format-table slots handed out like registers."""

    def __init__(self) -> None:
        self.free = list(reversed(range(abi()["abi"]["ABI_FMT_SLOTS"])))

    def take(self) -> int:
        if not self.free:
            raise UnsupportedPackage(
                f"the training step needs more than {abi()['abi']['ABI_FMT_SLOTS']} live gradient formats"
            )
        return self.free.pop()

    def give_back(self, *grads: Grad) -> None:
        for s in dict.fromkeys(g.slot for g in grads):
            self.free.append(s)


class _TrainBuilder(_Builder):
    """The forward builder plus the caches the backward reads, and the backward itself."""

    def __init__(self, pkg: Package, cfg: ModelConfig):
        super().__init__(pkg, cfg)
        self.ln: dict[
            str, tuple[int, Tensor, Tensor]
        ] = {}  # LayerNorm prefix -> (fx, cache n, cache (r, sh))
        self.slots = _Slots()
        self.backward: list[Op] = []
        self.wgrads: dict[str, Grad] = {}

    def layernorm(self, prefix: str, x: Tensor, fx: int, out: str, rows: int) -> Tensor:
        y = super().layernorm(prefix, x, fx, out, rows)
        n = self.act(prefix + ".cache.n", rows, x.cols, np.int32)
        rs = self.act(prefix + ".cache.rs", rows, 2, np.int32)
        op = self.forward[-1]
        cache = dict(AUX0=n.addr, AS=n.stride, AUX1=rs.addr)
        self.forward[-1] = replace(op, fields=op.fields | cache, flags=op.flags + ("CACHE",))
        self.ln[prefix] = (fx, n, rs)
        return y

    def store_probs(self) -> None:
        """Every ATTENTION also writes its probabilities: (heads x M rows, M), row stride M padded."""
        for k, op in enumerate(self.forward):
            if op.kind == "ATTENTION":
                m = op.fields["M"]
                probs = self.act(op.name + ".probs", op.fields["P0"] * m, m)
                self.forward[k] = replace(
                    op, fields=op.fields | dict(AUX2=probs.addr), flags=op.flags + ("PROBS",)
                )

    # ---------------------------------------------------------------- backward
    def grad(self, name: str, rows: int, cols: int) -> Grad:
        return Grad(self.act("grad." + name, rows, cols), self.slots.take())

    def weight_grad(self, key: str) -> Grad:
        w = self.w(key)
        g = self.grad(key, w.rows, w.cols)
        self.wgrads[key] = g
        return g

    def op_named(self, name: str) -> Op:
        return next(op for op in self.forward if op.name == name)

    def linear_bwd(self, prefix: str, dy: Grad, x: Tensor, fx: int, dx_name: str | None) -> Grad | None:
        """dW and db of ``prefix``, and dx (named ``grad.<dx_name>``) unless dx_name is None."""
        has_bias = prefix + ".bias" in self.arena.tensors
        dw = self.weight_grad(prefix + ".weight")
        db = self.weight_grad(prefix + ".bias") if has_bias else None
        self.backward.append(B.linear_bwd_dw(prefix + ".backward.dw", self.table, dy, x, dw, db, fx))
        if dx_name is None:
            return None
        w = self.w(prefix + ".weight")
        dx = self.grad(dx_name, dy.t.rows, w.cols)
        self.backward.append(
            B.linear_bwd_dx(prefix + ".backward.dx", self.table, dy, w, dx, self.wfmt[prefix + ".weight"])
        )
        return dx

    def layernorm_bwd(self, prefix: str, dy: Grad, dx: Grad) -> None:
        fx, n, rs = self.ln[prefix]
        dg, db = self.weight_grad(prefix + ".weight"), self.weight_grad(prefix + ".bias")
        self.backward.append(
            B.layernorm_bwd(
                prefix + ".backward",
                self.table,
                dy,
                self.w(prefix + ".weight"),
                n,
                rs,
                dx,
                dg,
                db,
                self.wfmt[prefix + ".weight"],
                fx,
            )  # fmt: skip
        )

    def block_bwd(self, i: int, dh: Grad, plan: dict) -> Grad:
        """The gradient of block i's input from that of its output (reference model_backward's loop)."""
        cfg, pre, p, T = self.cfg, self.cfg.num_prefix_tokens, f"blocks.{i}", self.arena.tensors
        C, tab = cfg.embed_dim, self.table
        # h_out = r1 + fc2(gelu(fc1(norm2(r1))))
        dg = self.linear_bwd(
            p + ".mlp.fc2", dh, T[p + ".mlp.act.out"], self.f(p + ".mlp.act.out"), p + ".mlp.act.out"
        )
        df1 = self.grad(p + ".mlp.fc1.out", dg.t.rows, dg.t.cols)
        self.backward.append(B.gelu_bwd(p + ".mlp.act.backward", tab, dg, T[p + ".mlp.fc1.out"], df1,
                                        self.f(p + ".mlp.fc1.out")))  # fmt: skip
        dn2 = self.linear_bwd(
            p + ".mlp.fc1", df1, T[p + ".norm2.out"], self.f(p + ".norm2.out"), p + ".norm2.out"
        )
        r1 = p + (".resid1.kept" if i in plan else ".resid1.out")
        dr1b = self.grad(p + ".norm2.in", dh.t.rows, C)
        self.layernorm_bwd(p + ".norm2", dn2, dr1b)
        dr1 = self.grad(r1, dh.t.rows, C)
        self.backward.append(B.grad_add(p + ".out.fork", tab, dh, dr1b, dr1))
        done = [dh, dg, df1, dn2, dr1b]
        if i in plan:  # the TA-Selector gathered r1: scatter its gradient back
            gather = self.op_named(p + ".gather")
            idx = T.get(p + ".select.slots", T[p + ".keep_idx"])
            if idx.addr != gather.fields["AUX0"]:
                raise AssertionError(f"{p}: the gather's indices are not {idx}")  # a program-builder bug
            full = T[p + ".resid1.out"]
            dfull = Grad(self.act("grad." + p + ".resid1.out", full.rows, C), dr1.slot)
            self.backward.append(B.scatter(p + ".gather.backward", dr1, idx, dfull, pre))
            dr1 = dfull
        # r1 = h + proj(attn(qkv(norm1(h))))
        dctx = self.linear_bwd(
            p + ".attn.proj", dr1, T[p + ".attn.ctx"], self.f(p + ".attn.ctx"), p + ".attn.ctx"
        )
        qkv = T[p + ".attn.qkv.out"]
        dqkv = self.grad(p + ".attn.qkv.out", qkv.rows, qkv.cols)
        self.backward.append(B.attention_bwd(p + ".attn.backward", tab, dctx, self.op_named(p + ".attn"),
                                             T[p + ".attn.probs"], dqkv, self.f(p + ".attn.qkv.out")))  # fmt: skip
        dn1 = self.linear_bwd(
            p + ".attn.qkv", dqkv, T[p + ".norm1.out"], self.f(p + ".norm1.out"), p + ".norm1.out"
        )
        dhb = self.grad(p + ".norm1.in", dr1.t.rows, C)
        self.layernorm_bwd(p + ".norm1", dn1, dhb)
        dh_in = self.grad("embed.out" if i == 0 else f"blocks.{i - 1}.out", dr1.t.rows, C)
        self.backward.append(B.grad_add(p + ".resid1.fork", tab, dr1, dhb, dh_in))
        self.slots.give_back(*done, dr1, dctx, dqkv, dn1, dhb)
        return dh_in

    def build_backward(self, lr_q: int) -> None:
        """reference ops_backward.model_backward, then model.sgd_update, as ops."""
        cfg, pre, T = self.cfg, self.cfg.num_prefix_tokens, self.arena.tensors
        self.table = self.act("grad.formats", 1, abi()["abi"]["ABI_FMT_SLOTS"], np.int32)
        label = self.act("label", 1, 1, np.int32)
        logits = T["head.out"]
        dlog = self.grad("loss.dlogits", 1, logits.cols)
        self.wgrads["loss.dlogits"] = dlog
        self.backward.append(B.ce_grad("loss", self.table, logits, label, dlog, self.f("head.out")))
        dnf = self.linear_bwd("head", dlog, T["norm.out"], self.f("norm.out"), "norm.out")
        last = T[f"blocks.{cfg.depth - 1}.out"]
        dh = self.grad(f"blocks.{cfg.depth - 1}.out", last.rows, last.cols)  # only [CLS] reaches the head:
        self.layernorm_bwd("norm", dnf, dh.rows(0, 1))  # the other rows stay 0
        self.slots.give_back(dnf)
        plan = dict(zip(cfg.locations, cfg.stage_plan(), strict=True))
        for i in reversed(range(cfg.depth)):
            dh = self.block_bwd(i, dh, plan)
        # embedding: h0 = concat(cls, patch_embed(patches)) + pos
        self.backward.append(
            B.grad_requant("pos_embed.backward", self.table, dh, self.weight_grad("pos_embed"))
        )
        self.backward.append(
            B.grad_requant("cls_token.backward", self.table, dh.rows(0, pre), self.weight_grad("cls_token"))
        )
        self.linear_bwd("patch_embed.proj", dh.rows(pre, cfg.num_patches), T["patch_embed.patches"],
                        self.f("input"), None)  # fmt: skip
        for key in self.pkg.manifest["weights"]:
            if key not in self.wgrads:
                raise UnsupportedPackage(f"weight {key!r} has no gradient in the engine's training step")
            w = self.w(key)
            master = self.data("master." + key, w_values(self.pkg, key) << MASTER_EXTRA_FRAC, np.int32)
            self.backward.append(
                B.sgd(key + ".sgd", self.table, self.wgrads[key], master, w, self.wfmt[key], lr_q)
            )


def w_values(pkg: Package, key: str) -> np.ndarray:
    return engine_shape(key, pkg.tensor(key)).astype(np.int64)


def lr_fixed(lr: float) -> int:
    """lr at LR_FRAC fractional bits, rounded half up (reference model.sgd_update)."""
    return int(np.floor(lr * 2.0**LR_FRAC + 0.5))


def build_train_program(pkg: Package, lr: float) -> TrainProgram:
    """The arena image and descriptor lists (setup, forward, train) of one SGD step on one sample."""
    cfg = ModelConfig.from_manifest(pkg.manifest)
    check_supported(pkg.manifest, cfg)
    lr_q = lr_fixed(lr)
    if not 0 <= lr_q < 1 << 47:
        raise UnsupportedPackage(f"learning rate {lr}: the engine takes 0 <= lr < 2^23")
    b = _TrainBuilder(pkg, cfg)
    setup, state = lay_out_forward(b)  # the forward of program.build_program, with caches
    b.store_probs()
    b.build_backward(lr_q)
    train = b.forward + b.backward
    finish(b, {"setup": setup, "forward": b.forward, "train": train}, "training step")
    return TrainProgram(cfg, b.arena, setup, b.forward, dict(b.afmt), state["keep_idx"], state["connections"],
                        backward=b.backward, grads=dict(b.wgrads), table=b.table, lr_q=lr_q)  # fmt: skip
