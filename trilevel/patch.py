"""Patch a timm VisionTransformer in place with TA-Selectors (token and attention level).

The way ToMe patches timm: the classes of the model, of every block and of every block's
attention are swapped for subclasses made on the fly. The model still runs timm's own
``forward_features`` / ``forward_intermediates`` through ``model.blocks``, so forward hooks,
grad checkpointing (``checkpoint_seq``) and whatever timm adds later keep working:

- a block holding a TA-Selector (or the statistics block) runs its two residual lines and
  selects the tokens (and connections) between them;
- every attention reads the connection mask of the last selector before it, when that
  selector keeps fewer than all connections, and otherwise runs timm's own forward.

What passes from a selector to the blocks after it (the connection mask, the record) lives
in ``model.trilevel`` for the duration of one forward, keyed by the selector's block, so a
block recomputed by grad checkpointing in the backward pass reads what the forward read.
No parameters are added, state_dict keys stay the same, and :func:`unpatch` restores every
original class.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from timm.models.vision_transformer import VisionTransformer

from . import selection as sel
from .attention import attention_forward
from .models import default_locations


@dataclass(eq=False)
class TriLevelState:
    """Runtime knobs and the record of the last forward, at ``model.trilevel``.

    token_keep, attn_keep: current keep ratios R_T and R_A (the warm-up schedule moves them).
    locations: block indices whose block holds a TA-Selector (after attention + residual).
    stat_layer: block whose attention variance is recorded for the example level (None: off).
    record: keep the kept-token and connection indices of the last forward (for export and
    visualisation; off during compiled training, where the statistic alone is kept).
    symbolic_counts: under torch.compile the token and connection counts become symbolic
    sizes, so one graph serves every keep ratio instead of one graph per distinct count.
    Off by default: it works on the CPU (tests/test_compile_recompiles.py), but with
    PyTorch 2.11 on an H100 the compiled training step failed (docs/design.md).
    attention_level: run the attention level's code path also at attn_keep 1.0 (every
    connection kept, the same output), so that a symbolic graph keeps its structure when the
    warm-up moves attn_keep off 1.0. The attention level always runs at attn_keep < 1.
    """

    token_keep: float = 0.7
    attn_keep: float = 1.0
    locations: tuple[int, ...] = (3, 6, 9)
    stat_layer: int | None = None
    record: bool = False
    symbolic_counts: bool = False
    attention_level: bool = False
    # Outputs of the last forward.
    last_keep_idx: list[torch.Tensor] = field(default_factory=list)  # (B, n_keep) original patch ids
    last_connections: list[torch.Tensor | None] = field(default_factory=list)  # (B, n_keep, n_conn)
    last_attn_var: torch.Tensor | None = None  # (B,) variance statistic from stat_layer
    # Fixed by the model at patch time.
    num_patches: int = field(default=0, repr=False)
    num_prefix: int = field(default=1, repr=False)
    has_cls: bool = field(default=True, repr=False)
    device: torch.device = field(default=torch.device("cpu"), repr=False)
    # Per selector, an empty tensor (0, n_keep, n_conn) whose sizes carry the counts into
    # the forward: a compiled graph reads them as symbolic sizes, never the ratios.
    counts: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)
    # What the forward branches on: branching on attn_keep itself would make a compiled
    # graph guard on the ratio's value.
    attention_on: bool = field(default=False, init=False, repr=False)
    # Values passed between blocks during one forward, keyed by (what, block index).
    scratch: dict = field(default_factory=dict, repr=False)

    def __setattr__(self, name: str, value) -> None:
        super().__setattr__(name, value)
        # A new ratio, location set or device rebuilds the count tensors (the trainer sets
        # the ratios directly, every step of the warm-up).
        if name in _COUNT_INPUTS and "scratch" in self.__dict__:  # after __init__
            self._refresh_counts()

    def __post_init__(self) -> None:
        self._refresh_counts()

    def _refresh_counts(self) -> None:
        counts, n = {}, self.num_patches
        for i in self.locations:
            n_keep = sel.keep_count(n, self.token_keep)
            c = torch.empty(0, n_keep, sel.keep_count(n_keep, self.attn_keep), device=self.device)
            if self.symbolic_counts:
                torch._dynamo.maybe_mark_dynamic(c, 1)
                torch._dynamo.maybe_mark_dynamic(c, 2)
            counts[i], n = c, n_keep
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "attention_on", self.attention_level or self.attn_keep < 1.0)

    def governing_selector(self, block: int) -> int | None:
        """The last selector before ``block``: its connection mask holds in ``block``'s attention."""
        earlier = [i for i in self.locations if i < block]
        return earlier[-1] if earlier else None


_COUNT_INPUTS = frozenset(
    {"token_keep", "attn_keep", "attention_level", "locations", "symbolic_counts", "num_patches", "device"}
)


class _Unset:
    def __repr__(self) -> str:
        return "unchanged"


UNCHANGED = _Unset()  # stat_layer's "not given" (None means: no statistics block)


def _validate_ratio(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value}")
    return value


_SELECTOR_BLOCK_PARTS = ("norm1", "attn", "ls1", "drop_path1", "norm2", "mlp", "ls2", "drop_path2")
_ATTENTION_PARTS = ("qkv", "q_norm", "k_norm", "attn_drop", "proj", "proj_drop", "num_heads", "head_dim")


def _missing_attention_parts(block) -> list[str]:
    attn = getattr(block, "attn", None)
    return [f"attn.{p}" for p in _ATTENTION_PARTS if not hasattr(attn, p)]


def _check_blocks(model: VisionTransformer, locations: tuple[int, ...], stat_layer: int | None) -> None:
    """Selector and statistics blocks must be pre-norm timm Blocks; blocks after the first
    selector need a standard Attention, which the connection mask is applied in."""
    for i, block in enumerate(model.blocks):
        holds_selector = i in locations or i == stat_layer
        missing = [p for p in _SELECTOR_BLOCK_PARTS if not hasattr(block, p)] if holds_selector else []
        if holds_selector or (locations and i > locations[0]):
            missing += _missing_attention_parts(block)
        if missing:
            raise ValueError(
                f"block {i} ({type(block).__name__}) is not a pre-norm timm Block with a standard "
                f"Attention (missing {', '.join(missing)}); a TA-Selector cannot be placed "
                f"{'there' if holds_selector else 'before it'}"
            )


def _configure(model: VisionTransformer, st: TriLevelState, token_keep, attn_keep, locations, stat_layer):
    """Validate the given settings against the model and write them into ``st``; None and
    UNCHANGED leave a setting as it is."""
    depth = len(model.blocks)
    if locations is not None:
        locations = tuple(sorted({int(i) for i in locations}))
        for i in locations:
            if not 0 <= i < depth:
                raise ValueError(f"selector location {i} is outside the model's blocks 0..{depth - 1}")
    else:
        locations = st.locations
    if stat_layer is UNCHANGED:
        stat_layer = st.stat_layer
    elif stat_layer is not None:
        stat_layer = int(stat_layer)
        if not 0 <= stat_layer < depth:
            raise ValueError(f"stat_layer {stat_layer} is outside the model's blocks 0..{depth - 1}")
    token_keep = st.token_keep if token_keep is None else _validate_ratio("token_keep", token_keep)
    attn_keep = st.attn_keep if attn_keep is None else _validate_ratio("attn_keep", attn_keep)
    _check_blocks(model, locations, stat_layer)
    st.token_keep, st.attn_keep, st.locations, st.stat_layer = token_keep, attn_keep, locations, stat_layer
    st.scratch.clear()


def _refuse_masks(attn_mask, is_causal) -> None:
    if attn_mask is not None or is_causal:
        raise ValueError("a Tri-Level patched ViT makes its own attention masks (attn_mask, is_causal)")


class _TriLevelModel:
    """VisionTransformer: timm's own forwards, with the per-forward values cleared after."""

    trilevel: TriLevelState

    def forward_features(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False) -> torch.Tensor:
        _refuse_masks(attn_mask, is_causal)
        self.trilevel.scratch.clear()
        x = super().forward_features(x)
        self._trilevel_end_forward()
        return x

    def forward_intermediates(self, x: torch.Tensor, *args, **kwargs):
        """timm's ``forward_intermediates`` over the patched blocks: the intermediates are the
        tokens each block really outputs, so after a selector that drops tokens they are the
        kept tokens (``output_fmt='NLC'``); a patch grid (``'NCHW'``) is refused there."""
        base = super().forward_intermediates
        args_in = inspect.signature(base).bind(x, *args, **kwargs)
        args_in.apply_defaults()
        a = args_in.arguments
        _refuse_masks(a.get("attn_mask"), a.get("is_causal", False))
        if a["output_fmt"] == "NCHW":
            from timm.models._features import feature_take_indices

            taken, _ = feature_take_indices(len(self.blocks), a["indices"])
            st = self.trilevel
            pruned = [i for i in st.locations if st.token_keep < 1.0 and any(t >= i for t in taken)]
            if pruned:
                raise ValueError(
                    f"block {pruned[0]}'s TA-Selector keeps {st.token_keep} of the patch tokens, so "
                    "intermediates from it on are no patch grid; use output_fmt='NLC' for the kept tokens"
                )
        self.trilevel.scratch.clear()
        out = base(*args_in.args, **args_in.kwargs)
        self._trilevel_end_forward()
        return out

    def _apply(self, fn, *args, **kwargs):
        # .to() / .cuda(): the count tensors follow the parameters (a CPU tensor among a
        # compiled graph's inputs would keep CUDA graphs off).
        out = super()._apply(fn, *args, **kwargs)
        param = next(self.parameters(), None)
        if param is not None:
            self.trilevel.device = param.device
        return out

    def _trilevel_end_forward(self) -> None:
        st = self.trilevel
        if st.record:
            ran = [i for i in st.locations if ("origin", i) in st.scratch]
            st.last_keep_idx = [st.scratch[("origin", i)] for i in ran]
            st.last_connections = [st.scratch[("conn", i)] for i in ran]
        # Recomputed blocks (grad checkpointing) read these in the backward pass.
        if not (self.grad_checkpointing and torch.is_grad_enabled()):
            st.scratch.clear()


class _TriLevelBlock:
    """A pre-norm Block that holds a TA-Selector (or the statistics) between attention and MLP.

    In any other position it is timm's Block unchanged.
    """

    _trilevel_index: int
    _trilevel_state: TriLevelState

    def forward(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False) -> torch.Tensor:
        st, i = self._trilevel_state, self._trilevel_index
        is_selector = i in st.locations
        if not is_selector and i != st.stat_layer:
            return (
                super().forward(x, attn_mask=attn_mask, is_causal=is_causal)
                if (attn_mask is not None or is_causal)
                else super().forward(x)
            )
        _refuse_masks(attn_mask, is_causal)
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))  # leaves q, k in the scratch
        q, k, mask = st.scratch.pop(("qk", i))
        x = _select(st, i, is_selector, x, q, k, mask, self.attn.scale)
        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        return x


def _select(st: TriLevelState, i: int, is_selector: bool, x, q, k, mask, scale: float) -> torch.Tensor:
    """The TA-Selector of block ``i`` on the block's residual stream x (B, N, C).

    q, k: the block's detached (B, H, N, D) queries and keys; mask: the connection mask its
    attention ran with. Records the statistic, leaves the connection mask for the blocks
    after, and returns the kept tokens (B, M, C).
    """
    prefix = st.num_prefix
    avg_attn = None
    if st.has_cls:
        # Only the [CLS] row; it is never masked (prefix rows attend densely).
        patch_scores = sel.head_avg_cls_attention(q, k, scale)[:, prefix:]  # (B, Np)
    else:
        avg_attn = sel.head_avg_attention(sel.attention_probs(q, k, scale, mask))  # (B, N, N)
        patch_scores = sel.token_scores(None, avg_attn, prefix, has_cls=False)
    if i == st.stat_layer:
        st.last_attn_var = sel.attention_variance(patch_scores).detach()
    if not is_selector:
        return x
    n_keep, n_conn = _counts(st, i, patch_scores.shape[1])
    idx = sel.select_tokens(patch_scores, n_keep)  # (B, n_keep)
    x = sel.gather_tokens(x, idx, prefix)
    conn = new_mask = None
    if st.attention_on:
        if avg_attn is None:
            kept = sel.kept_attention(q, k, idx, prefix, scale, mask)  # (B, M, M)
        else:
            kept = sel.restrict_attention(avg_attn, idx, prefix)
        conn = sel.select_connections(kept, prefix, n_conn)
        new_mask = sel.connection_bias(conn, prefix, dtype=q.dtype)
    st.scratch[("mask", i)] = new_mask
    if st.record:
        before = st.governing_selector(i)
        origin = st.scratch.get(("origin", before)) if before is not None else None
        st.scratch[("origin", i)] = idx if origin is None else origin.gather(1, idx)
        st.scratch[("conn", i)] = conn
    return x


def _counts(st: TriLevelState, i: int, n_patches: int) -> tuple[int, int]:
    """(n_keep, n_conn) of selector ``i`` for ``n_patches`` incoming patch tokens.

    Normally the sizes of ``st.counts[i]`` (symbolic under torch.compile; the comparison
    below is then between equal symbols and costs no guard). A model fed another image size
    than it was patched for (timm's dynamic_img_size) gets them from the ratios.
    """
    before = st.governing_selector(i)
    expected = st.counts[before].shape[1] if before is not None else st.num_patches
    if n_patches == expected:
        return st.counts[i].shape[1], st.counts[i].shape[2]
    n_keep = sel.keep_count(n_patches, st.token_keep)
    return n_keep, sel.keep_count(n_keep, st.attn_keep)


class _TriLevelAttention:
    """timm's Attention, under the connection mask of the last selector before its block.

    In a selector or statistics block it also leaves its detached q and k in the scratch for
    the selector. Without either it is timm's Attention unchanged.
    """

    _trilevel_index: int
    _trilevel_state: TriLevelState

    def forward(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False) -> torch.Tensor:
        st, i = self._trilevel_state, self._trilevel_index
        before = st.governing_selector(i)
        mask = st.scratch.get(("mask", before)) if before is not None else None
        scores_wanted = i in st.locations or i == st.stat_layer
        if mask is None and not scores_wanted:
            return (
                super().forward(x, attn_mask=attn_mask, is_causal=is_causal)
                if (attn_mask is not None or is_causal)
                else super().forward(x)
            )
        _refuse_masks(attn_mask, is_causal)
        out, q, k = attention_forward(self, x, mask)
        if scores_wanted:
            st.scratch[("qk", i)] = (q.detach(), k.detach(), mask)
        return out


_CLASS_CACHE: dict[tuple[type, type], type] = {}


def _swap_class(module: torch.nn.Module, mixin: type) -> None:
    cls = type(module)
    if (mixin, cls) not in _CLASS_CACHE:
        _CLASS_CACHE[(mixin, cls)] = type(f"TriLevel{cls.__name__}", (mixin, cls), {"_trilevel_base": cls})
    module.__class__ = _CLASS_CACHE[(mixin, cls)]


def _restore_class(module: torch.nn.Module) -> None:
    base = getattr(type(module), "_trilevel_base", None)
    if base is not None:
        module.__class__ = base
    for name in ("_trilevel_index", "_trilevel_state"):
        module.__dict__.pop(name, None)


def patch(
    model: VisionTransformer,
    token_keep: float | None = None,
    attn_keep: float | None = None,
    locations: Iterable[int] | None = None,
    stat_layer: int | None | _Unset = UNCHANGED,
) -> VisionTransformer:
    """Insert TA-Selectors into a timm VisionTransformer, in place; returns the model.

    Settings left out keep their current values; on a first patch they default to
    token_keep 0.7, attn_keep 1.0, the paper's locations (3, 6, 9) for 12 blocks (the same
    quarters otherwise) and no statistics block (stat_layer None). Patching an already
    patched model only updates the settings given.
    """
    if not isinstance(model, VisionTransformer):
        raise TypeError(f"trilevel.patch needs a timm VisionTransformer, got {type(model).__name__}")
    if is_patched(model):
        _configure(model, model.trilevel, token_keep, attn_keep, locations, stat_layer)
        return model
    param = next(model.parameters(), None)
    st = TriLevelState(
        locations=default_locations(len(model.blocks)),
        num_patches=model.patch_embed.num_patches,
        num_prefix=model.num_prefix_tokens,
        has_cls=model.cls_token is not None,
        device=param.device if param is not None else torch.device("cpu"),
    )
    _configure(model, st, token_keep, attn_keep, locations, stat_layer)
    model.trilevel = st
    for i, block in enumerate(model.blocks):
        if not _missing_attention_parts(block):
            _swap_class(block.attn, _TriLevelAttention)
            block.attn._trilevel_index, block.attn._trilevel_state = i, st
        if all(hasattr(block, p) for p in _SELECTOR_BLOCK_PARTS):
            _swap_class(block, _TriLevelBlock)
            block._trilevel_index, block._trilevel_state = i, st
    _swap_class(model, _TriLevelModel)
    return model


def unpatch(model: VisionTransformer) -> VisionTransformer:
    """Restore every original class; harmless on a model that is not patched."""
    if is_patched(model):
        for block in model.blocks:
            _restore_class(block)
            _restore_class(block.attn)
        _restore_class(model)
        del model.trilevel
    return model


def is_patched(model) -> bool:
    return isinstance(model, _TriLevelModel)
