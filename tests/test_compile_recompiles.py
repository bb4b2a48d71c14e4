"""Under torch.compile the warm-up staircase costs one graph per step of it, not one per iteration."""

import torch
from torch._dynamo.testing import CompileCounter

import trilevel
from trilevel.models import create
from trilevel.schedule import KeepRatioSchedule


def graphs_over_warmup(levels: int, steps: int = 24) -> int:
    torch.manual_seed(0)
    model = create(
        "vit_tiny_patch16_224", dict(img_size=16, patch_size=4, embed_dim=32, depth=4, num_heads=2)
    )
    trilevel.patch(model, token_keep=1.0, attn_keep=1.0, locations=(1, 2), stat_layer=3)
    token = KeepRatioSchedule(0.5, start_epoch=0.25, end_epoch=0.75, levels=levels)
    attn = KeepRatioSchedule(0.5, start_epoch=0.25, end_epoch=0.75, levels=levels)
    counter = CompileCounter()  # counts the graphs dynamo hands to the backend
    net = torch.compile(model, backend=counter, dynamic=False)
    x = torch.randn(2, 3, 16, 16)
    torch._dynamo.reset()
    for i in range(steps):
        model.trilevel.token_keep, model.trilevel.attn_keep = token(i / steps), attn(i / steps)
        net(x).sum().backward()
    return counter.frame_count


def test_staircase_warmup_compiles_levels_plus_one_graphs():
    assert graphs_over_warmup(levels=2) == 3  # R = 1.0, the middle step, the target


def test_exact_cosine_would_recompile_far_more():
    assert graphs_over_warmup(levels=0) > 6
