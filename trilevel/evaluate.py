"""Top-1 on the test set, split over the DDP ranks (timm's ``validate``)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from . import distributed as dist_utils


@torch.no_grad()
def evaluate(
    model,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    test_size: int,
    keep: tuple[float, float],
    autocast: dict,
) -> float | None:
    """Top-1 (%) of ``model`` at keep ratios ``keep`` (token, attention): the run's final ratios,
    as the paper evaluates. ``batches``: this rank's (x (B, C, S, S), y (B,)); the correct
    counts of all ranks are summed. The model's ratios and mode are put back afterwards.

    Run on the eager model: a compiled one would add a graph per evaluation ratio.
    """
    if test_size == 0:
        return None
    state, was_training = model.trilevel, model.training
    saved = state.token_keep, state.attn_keep
    state.token_keep, state.attn_keep = keep
    model.eval()
    device = next(model.parameters()).device
    correct = torch.zeros((), device=device, dtype=torch.long)
    try:
        for x, y in batches:
            with torch.autocast(**autocast):
                correct += (model(x).argmax(-1) == y).sum()
    finally:
        state.token_keep, state.attn_keep = saved
        model.train(was_training)
    return 100.0 * float(dist_utils.all_reduce_sum(correct)) / test_size
