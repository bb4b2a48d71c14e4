"""The TA-Selector's pure core: tensors in, indices out.

Nothing here knows about timm or modules; the patch, the example selector, the exporter
and the tests call these functions, so the indices the model uses are the ones exported.
"""

from __future__ import annotations

import math

import torch


def keep_count(n: int, ratio: float) -> int:
    """Number of tokens (or keys) kept out of ``n`` at keep ratio ``ratio``: ceil(ratio * n).

    The ratio is rounded to 6 decimals first so that 0.7 * 140 does not become 98.00000001
    and keep one token more than intended.
    """
    return max(1, min(n, math.ceil(round(ratio * n, 6))))


def head_avg_cls_attention(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """Head-averaged attention row of the first token ([CLS]).

    q, k: (B, H, N, D). Returns (B, N): softmax(q_cls . k^T * scale) averaged over heads.
    Costs one (1 x N) row per head, so blocks that need it keep the fused attention kernel.
    """
    s = (q[:, :, :1].float() * scale) @ k.float().transpose(-2, -1)  # (B, H, 1, N)
    return s.softmax(dim=-1).mean(dim=1).squeeze(1)


def head_avg_attention(attn: torch.Tensor) -> torch.Tensor:
    """(B, H, N, N) attention probabilities -> (B, N, N) averaged over heads."""
    return attn.float().mean(dim=1)


def token_scores(
    cls_row: torch.Tensor | None, avg_attn: torch.Tensor | None, num_prefix: int, has_cls: bool
) -> torch.Tensor:
    """Importance of each patch token, (B, N - num_prefix).

    With a [CLS] token: the attention [CLS] pays to each patch. Without one: the column
    sums of the head-averaged attention map (the attention each token receives).
    """
    if has_cls:
        return cls_row[:, num_prefix:]
    return avg_attn.sum(dim=1)[:, num_prefix:]


@torch.library.custom_op("trilevel::ranked_indices", mutates_args=())
def _ranked_indices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Eager body of :func:`topk_indices`, opaque to torch.compile.

    Inductor would otherwise generate a Triton bitonic-sort kernel for every selector and
    fuse it with the attention around it; on CUDA those kernels took minutes to compile
    (more than 150 s for DeiT-T with the attention level on). As a custom op the graph calls
    the library sort (microseconds at these sizes) and still captures in a CUDA graph.
    """
    idx = scores.sort(dim=-1, descending=True, stable=True).indices[..., :k]
    return idx.sort(dim=-1).values


@_ranked_indices.register_fake
def _(scores: torch.Tensor, k: int) -> torch.Tensor:
    return scores.new_empty((*scores.shape[:-1], k), dtype=torch.long)


def topk_indices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest entries along the last dim, ties to the lower index, ascending.

    Ties are common, not rare: after a selector with R_A < 1 most attention entries are
    exactly 0. torch.topk makes no promise about ties (the CPU and CUDA kernels differ);
    a stable descending sort keeps the lower index, which is also the rule of ONNX TopK and
    of the fixed-point engine, so PyTorch, ONNX and the hardware pick the same tokens. In an
    ONNX export the graph uses TopK itself (a stable sort does not export). Returning the
    indices in ascending order keeps the kept tokens in their spatial order.
    """
    if torch.onnx.is_in_onnx_export():
        return scores.topk(k, dim=-1).indices.sort(dim=-1).values
    return _ranked_indices(scores, k)


def select_tokens(scores: torch.Tensor, n_keep: int) -> torch.Tensor:
    """Indices of the ``n_keep`` highest scores per row. scores: (B, Np) -> int64 (B, n_keep)."""
    return topk_indices(scores, n_keep)


def gather_tokens(x: torch.Tensor, idx: torch.Tensor, num_prefix: int) -> torch.Tensor:
    """Keep the prefix tokens and the patch tokens at ``idx``: a real gather.

    x: (B, N, C), idx: (B, n_keep) into the patch tokens. Returns (B, num_prefix + n_keep, C).
    """
    patches = x[:, num_prefix:].gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
    return torch.cat([x[:, :num_prefix], patches], dim=1)


def kept_sequence(idx: torch.Tensor, num_prefix: int) -> torch.Tensor:
    """Positions in the sequence before selection of the tokens kept: the prefix, then ``idx``.

    idx: (B, n_keep) kept patch indices. Returns int64 (B, M), M = num_prefix + n_keep.
    """
    prefix = torch.arange(num_prefix, device=idx.device).expand(idx.shape[0], -1)
    return torch.cat([prefix, idx + num_prefix], dim=1)


def restrict_attention(avg_attn: torch.Tensor, idx: torch.Tensor, num_prefix: int) -> torch.Tensor:
    """Head-averaged attention among the kept tokens only.

    avg_attn: (B, N, N) before selection, idx: (B, n_keep) kept patch indices.
    Returns (B, M, M), M = num_prefix + n_keep, in the order of the gathered sequence.
    """
    seq = kept_sequence(idx, num_prefix)  # (B, M) positions in the old sequence
    rows = avg_attn.gather(1, seq.unsqueeze(-1).expand(-1, -1, avg_attn.shape[-1]))  # (B, M, N)
    return rows.gather(2, seq.unsqueeze(1).expand(-1, seq.shape[1], -1))  # (B, M, M)


@torch.no_grad()
def attention_probs(
    q: torch.Tensor, k: torch.Tensor, scale: float, mask: torch.Tensor | None
) -> torch.Tensor:
    """Softmax attention probabilities (B, H, Nq, Nk), masked keys at exactly 0.

    q: (B, H, Nq, D), k: (B, H, Nk, D). mask: None, a boolean mask (True = attend) or an
    additive bias (0 or -inf), broadcastable to (B, H, Nq, Nk).
    """
    scores = (q * scale) @ k.transpose(-2, -1)
    if mask is not None and mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, float("-inf"))
    elif mask is not None:
        scores = scores + mask
    return scores.softmax(dim=-1)


@torch.no_grad()
def kept_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    idx: torch.Tensor,
    num_prefix: int,
    scale: float,
    mask: torch.Tensor | None,
) -> torch.Tensor:
    """Head-averaged attention among the kept tokens, computed for the kept rows only.

    Equals ``restrict_attention(head_avg_attention(attention_probs(q, k, scale, mask)), idx,
    num_prefix)`` (each row is still a softmax over all N keys before selection) but skips
    the rows of dropped queries: (B, H, M, N) probabilities instead of (B, H, N, N).
    q, k: (B, H, N, D); idx: (B, n_keep); mask: None or (B, 1, N, N). Returns (B, M, M).
    """
    B, H, _, D = q.shape
    seq = kept_sequence(idx, num_prefix)  # (B, M)
    M = seq.shape[1]
    q_kept = q.gather(2, seq[:, None, :, None].expand(B, H, M, D))  # (B, H, M, D)
    if mask is not None:
        mask = mask.gather(2, seq[:, None, :, None].expand(B, 1, M, mask.shape[-1]))  # (B, 1, M, N)
    rows = head_avg_attention(attention_probs(q_kept, k, scale, mask))  # (B, M, N)
    return rows.gather(2, seq.unsqueeze(1).expand(B, M, M))  # (B, M, M)


def select_connections(avg_attn: torch.Tensor, num_prefix: int, n_conn: int) -> torch.Tensor:
    """Per patch row, the ``n_conn`` patch keys with the largest head-averaged attention.

    avg_attn: (B, M, M) over the kept sequence. Returns int64 (B, M - num_prefix, n_conn),
    indices into the patch part of the sequence, ascending. Prefix rows and prefix columns
    stay dense and are not listed.
    """
    return topk_indices(avg_attn[:, num_prefix:, num_prefix:], n_conn)  # rows of (B, Np, Np)


def connection_mask(conn: torch.Tensor, num_prefix: int) -> torch.Tensor:
    """Boolean attention mask (B, 1, M, M) from connection indices (True = attend).

    Prefix rows attend to every key and every row attends to the prefix keys, as in the
    paper's code; patch rows attend to their listed patch keys. The head dimension is 1:
    the mask is shared by all heads.
    """
    B, n_rows, _ = conn.shape
    M = num_prefix + n_rows
    mask = torch.zeros(B, M, M, dtype=torch.bool, device=conn.device)
    mask[:, :num_prefix] = True
    mask[:, :, :num_prefix] = True
    patch_rows = mask[:, num_prefix:, num_prefix:]
    patch_rows.scatter_(-1, conn, True)
    return mask.unsqueeze(1)


def connection_bias(conn: torch.Tensor, num_prefix: int, dtype: torch.dtype) -> torch.Tensor:
    """The connection mask of :func:`connection_mask` as an additive bias (B, 1, M, M): 0 or -inf.

    This is what SDPA's kernels consume: a boolean mask is converted to such a bias at every
    call. The rows are stored 8-aligned (the memory-efficient kernel's alignment; unaligned,
    it copies the bias into an aligned one at every call) and sliced to M columns. The
    padding is always at least one column, so a symbolic M needs no guard on M % 8.
    """
    B, n_rows, _ = conn.shape
    M = num_prefix + n_rows
    padded = (M // 8 + 1) * 8
    bias = torch.full((B, M, padded), float("-inf"), dtype=dtype, device=conn.device)
    bias[:, :num_prefix] = 0.0
    bias[:, :, :num_prefix] = 0.0
    bias[:, num_prefix:, num_prefix:M].scatter_(-1, conn, 0.0)
    return bias[:, :, :M].unsqueeze(1)


def attention_variance(patch_scores: torch.Tensor) -> torch.Tensor:
    """Per-sample variance of the attention paid to the patch tokens, made scale-free.

    patch_scores: (B, Np), the [CLS] attention row over the patches (or, without [CLS],
    the cumulative attention each patch receives). The scores are renormalised to sum to
    Np before the variance, so the statistic does not shrink like 1/Np^2 as tokens are
    pruned during warm-up (a flaw of the paper's code) and epochs stay comparable.
    Returns float32 (B,).
    """
    a = patch_scores.float()
    a = a / a.sum(dim=1, keepdim=True).clamp_min(1e-12) * a.shape[1]
    return a.var(dim=1, unbiased=False)
