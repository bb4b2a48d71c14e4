"""A whole DeiT forward, backward and SGD update in the engine's arithmetic, composed from
:mod:`.ops_forward` and :mod:`.ops_backward`.

Tensor names (formats in the package manifest, ``activations``):
  input, patch_embed.out, embed.out,
  blocks.{i}.norm1.out, .attn.qkv.out, .attn.ctx, .attn.proj.out, .resid1.out,
  .norm2.out, .mlp.fc1.out, .mlp.act.out, .mlp.fc2.out, blocks.{i}.out,
  norm.out (the [CLS] row only: the head reads nothing else), head.out (logits).
Attention probabilities are at PROB_FRAC (15) everywhere; attention scores stay in the
accumulator (they have no 16-bit format). Weight names are timm's state_dict keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import fixedpoint as fp
from . import ops_backward as B
from . import ops_forward as F

MASTER_EXTRA_FRAC = 16  # the SGD master copy keeps 16 more fractional bits than the weight (int32)
LR_FRAC = 24  # the learning rate is a 32-bit constant with 24 fractional bits


def keep_count(n: int, ratio: float) -> int:
    """ceil(ratio * n) with the ratio rounded to 6 decimals, at least 1 (trilevel.selection.keep_count)."""
    return max(1, min(n, int(np.ceil(round(ratio * n, 6)))))


@dataclass(frozen=True)
class ModelConfig:
    img_size: int
    patch_size: int
    in_chans: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_hidden: int
    num_classes: int
    ln_eps: float
    locations: tuple[int, ...]
    token_keep: float
    attn_keep: float
    num_prefix_tokens: int = 1

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    def stage_plan(self) -> list[tuple[int, int | None]]:
        """Per selector: (patch tokens kept, connections per kept row or None when dense)."""
        n, plan = self.num_patches, []
        for _ in self.locations:
            n = keep_count(n, self.token_keep)
            plan.append((n, keep_count(n, self.attn_keep) if self.attn_keep < 1.0 else None))
        return plan

    @classmethod
    def from_manifest(cls, m: dict) -> ModelConfig:
        d, s = m["model"], m["selector"]
        return cls(
            img_size=d["img_size"],
            patch_size=d["patch_size"],
            in_chans=d["in_chans"],
            embed_dim=d["embed_dim"],
            depth=d["depth"],
            num_heads=d["num_heads"],
            mlp_hidden=d["mlp_hidden"],
            num_classes=d["num_classes"],
            ln_eps=d["ln_eps"],
            locations=tuple(s["locations"]),
            token_keep=s["token_keep"],
            attn_keep=s["attn_keep"],
            num_prefix_tokens=d["num_prefix_tokens"],
        )


@dataclass
class Forward:
    """What one forward produced. logits at ``formats['head.out']``."""

    logits: np.ndarray  # (B, num_classes)
    keep_idx: list[np.ndarray]  # per selector (B, n_keep) ORIGINAL patch ids, ascending
    connections: list[np.ndarray | None]  # per selector (B, n_keep, n_conn) or None
    trace: dict[str, np.ndarray] = field(default_factory=dict)  # layer outputs by name
    stats: fp.SatStats = field(default_factory=fp.SatStats)
    cache: dict = field(default_factory=dict)  # what the backward needs


class ReferenceModel:
    """Weights (int16 values in int64 arrays) and formats of a package, and the engine's math.

    weights: {timm state_dict key: int array}; wfmt: {key: frac_bits}; afmt: {activation name:
    frac_bits}. Training keeps an int32 master copy of every weight at wfmt + MASTER_EXTRA_FRAC.
    """

    def __init__(self, config: ModelConfig, weights: dict, wfmt: dict, afmt: dict):
        self.cfg = config
        self.w = {k: np.asarray(v, dtype=np.int64) for k, v in weights.items()}
        self.wfmt = dict(wfmt)
        self.afmt = dict(afmt)
        self.master = {k: v << MASTER_EXTRA_FRAC for k, v in self.w.items()}

    @classmethod
    def from_package(cls, pkg) -> ReferenceModel:
        m = pkg.manifest
        w = {k: pkg.tensor(k) for k in m["weights"]}
        wfmt = {k: v["frac_bits"] for k, v in m["weights"].items()}
        afmt = {k: v["frac_bits"] for k, v in m["activations"].items()}
        return cls(ModelConfig.from_manifest(m), w, wfmt, afmt)

    # ------------------------------------------------------------------ helpers
    def quantize_input(self, images) -> np.ndarray:
        """Normalised float images (B, Cin, H, W) -> int at formats['input']."""
        return fp.quantize(images, self.afmt["input"])

    def _lin(self, x, fx, prefix, out, st, bias=True):
        w, b = prefix + ".weight", prefix + ".bias"
        return F.linear(
            x,
            fx,
            self.w[w],
            self.wfmt[w],
            self.w[b] if bias else None,
            self.wfmt.get(b),
            self.afmt[out],
            st,
            out,
        )

    def _ln(self, x, fx, prefix, out, st):
        g, b = prefix + ".weight", prefix + ".bias"
        return F.layernorm(
            x, fx, self.w[g], self.wfmt[g], self.w[b], self.wfmt[b], self.afmt[out], self.cfg.ln_eps, st, out
        )

    # ------------------------------------------------------------------ forward
    def forward(self, x, trace: bool = False, keep_cache: bool = False) -> Forward:
        """x: (B, Cin, H, W) int at formats['input']. Vectorised over the batch."""
        cfg, a, st = self.cfg, self.afmt, fp.SatStats()
        pre = cfg.num_prefix_tokens
        tr: dict[str, np.ndarray] = {}
        cache: dict = {}

        def rec(name, t):
            if trace:
                tr[name] = t
            return t

        rec("input", x)
        patches = F.patchify(x, cfg.patch_size)  # (B, Np, Cin*p*p)
        w_pe = self.w["patch_embed.proj.weight"].reshape(cfg.embed_dim, -1)
        pe = F.linear(
            patches,
            a["input"],
            w_pe,
            self.wfmt["patch_embed.proj.weight"],
            self.w["patch_embed.proj.bias"],
            self.wfmt["patch_embed.proj.bias"],
            a["patch_embed.out"],
            st,
            "patch_embed.out",
        )
        rec("patch_embed.out", pe)
        Bn = x.shape[0]
        cls_tok = np.broadcast_to(self.w["cls_token"].reshape(1, 1, -1), (Bn, 1, cfg.embed_dim))
        pos = self.w["pos_embed"].reshape(1, -1, cfg.embed_dim)
        fpos, fcls = self.wfmt["pos_embed"], self.wfmt["cls_token"]
        h = np.concatenate(
            [
                F.add(cls_tok, fcls, pos[:, :pre], fpos, a["embed.out"], st, "embed.out"),
                F.add(pe, a["patch_embed.out"], pos[:, pre:], fpos, a["embed.out"], st, "embed.out"),
            ],
            axis=1,
        )  # (B, N, C)
        fh = a["embed.out"]
        rec("embed.out", h)
        cache["patches"] = patches

        mask = None
        origin = None
        keep_idx, conns = [], []
        plan = dict(zip(cfg.locations, cfg.stage_plan(), strict=True))
        for i in range(cfg.depth):
            p = f"blocks.{i}"
            n1, ln1 = self._ln(h, fh, p + ".norm1", p + ".norm1.out", st)
            qkv = self._lin(n1, a[p + ".norm1.out"], p + ".attn.qkv", p + ".attn.qkv.out", st)
            ctx, probs, p_wide = F.attention(
                qkv,
                a[p + ".attn.qkv.out"],
                cfg.num_heads,
                a[p + ".attn.ctx"],
                mask,
                st,
                p + ".attn",
            )
            proj = self._lin(ctx, a[p + ".attn.ctx"], p + ".attn.proj", p + ".attn.proj.out", st)
            r1 = F.add(h, fh, proj, a[p + ".attn.proj.out"], a[p + ".resid1.out"], st, p + ".resid1.out")
            for name, t in (("norm1.out", n1), ("attn.qkv.out", qkv), ("attn.ctx", ctx)):
                rec(f"{p}.{name}", t)
            rec(p + ".attn.proj.out", proj)
            rec(p + ".resid1.out", r1)
            blk = dict(h=h, fh=fh, n1=n1, ln1=ln1, qkv=qkv, probs=probs, mask=mask, ctx=ctx)
            if i in plan:
                n_keep, n_conn = plan[i]
                idx = F.select_tokens(p_wide, pre, n_keep)  # (B, n_keep) into the current patch slots
                conn = F.select_connections(p_wide, idx, pre, n_conn) if n_conn is not None else None
                r1 = F.gather_tokens(r1, idx, pre)
                mask = F.connection_mask(conn, pre) if conn is not None else None
                origin = idx if origin is None else np.take_along_axis(origin, idx, axis=1)
                keep_idx.append(origin)
                conns.append(conn)
                blk["idx"] = idx
                rec(p + ".keep_idx", origin)
                if conn is not None:
                    rec(p + ".connections", conn)
            fr1 = a[p + ".resid1.out"]
            n2, ln2 = self._ln(r1, fr1, p + ".norm2", p + ".norm2.out", st)
            f1 = self._lin(n2, a[p + ".norm2.out"], p + ".mlp.fc1", p + ".mlp.fc1.out", st)
            g = F.gelu(f1, a[p + ".mlp.fc1.out"], a[p + ".mlp.act.out"], st, p + ".mlp.act.out")
            f2 = self._lin(g, a[p + ".mlp.act.out"], p + ".mlp.fc2", p + ".mlp.fc2.out", st)
            h = F.add(r1, fr1, f2, a[p + ".mlp.fc2.out"], a[p + ".out"], st, p + ".out")
            fh = a[p + ".out"]
            for name, t in (("norm2.out", n2), ("mlp.fc1.out", f1), ("mlp.act.out", g), ("mlp.fc2.out", f2)):
                rec(f"{p}.{name}", t)
            rec(p + ".out", h)
            if keep_cache:
                blk.update(r1=r1, n2=n2, ln2=ln2, f1=f1, g=g)
                cache[p] = blk
        cls_row = h[:, 0]  # (B, C): the head reads only [CLS]
        nf, lnf = self._ln(cls_row, fh, "norm", "norm.out", st)
        logits = self._lin(nf, a["norm.out"], "head", "head.out", st)
        rec("norm.out", nf)
        rec("head.out", logits)
        if keep_cache:
            cache.update(h_last=h, fh_last=fh, nf=nf, lnf=lnf)
        return Forward(logits, keep_idx, conns, tr, st, cache)

    def logits_float(self, fwd: Forward) -> np.ndarray:
        return fp.dequantize(fwd.logits, self.afmt["head.out"])

    # ------------------------------------------------------------------ training
    def backward(self, fwd: Forward, labels) -> dict[str, tuple[np.ndarray, int]]:
        """Gradients of the summed cross-entropy over the batch: {name: (int16 values, frac_bits)}.

        Includes ``"loss.dlogits"`` (softmax - one-hot at PROB_FRAC) and one entry per weight.
        Every gradient tensor gets its format at run time (:func:`fixedpoint.dynamic_frac`).
        """
        return B.model_backward(self, fwd, labels)

    def sgd_update(self, grads: dict, lr: float) -> None:
        """w -= lr * g on the int32 master copy, then w = round(master) to 16 bits.

        lr is quantised to LR_FRAC fractional bits; the master copy of weight ``k`` has
        wfmt[k] + MASTER_EXTRA_FRAC fractional bits and saturates at 32 bits.
        """
        lr_q = int(np.floor(lr * 2.0**LR_FRAC + 0.5))
        for k in self.w:
            g, fg = grads[k]
            fm = self.wfmt[k] + MASTER_EXTRA_FRAC
            delta = fp.rshift_round(np.asarray(g, dtype=np.int64) * lr_q, fg + LR_FRAC - fm)
            self.master[k] = fp.saturate(self.master[k] - delta, bits=32)
            self.w[k] = fp.saturate(fp.rshift_round(self.master[k], MASTER_EXTRA_FRAC))

    def train_step(self, x, labels, lr: float) -> tuple[Forward, dict]:
        """Forward, backward and update on one batch (the engine trains one sample at a time)."""
        fwd = self.forward(x, keep_cache=True)
        grads = self.backward(fwd, labels)
        self.sgd_update(grads, lr)
        return fwd, grads
