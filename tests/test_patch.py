"""TA-Selector patch: identity at keep 1.0, counts, indices, connections, unpatch, gradients."""

import math

import pytest
import torch

import trilevel
from trilevel import selection as sel
from trilevel.macs import block_plan
from trilevel.models import create


def tiny_vit(**kw):
    args = dict(img_size=16, patch_size=4, embed_dim=32, depth=6, num_heads=2, num_classes=5)
    args.update(kw)
    torch.manual_seed(0)
    return create("vit_tiny_patch16_224", args).eval()


@pytest.fixture
def x():
    torch.manual_seed(1)
    return torch.randn(3, 3, 16, 16)


@pytest.mark.parametrize(
    "kw", [{}, {"class_token": False, "global_pool": "avg"}, {"init_values": 0.1, "qk_norm": True}]
)
def test_keep_ratio_one_is_the_unpatched_model(kw, x):
    model = tiny_vit(**kw)
    with torch.no_grad():
        ref = model(x)
        trilevel.patch(model, token_keep=1.0, attn_keep=1.0, locations=(1, 3))
        out = model(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_token_counts_follow_ceil_per_stage(x):
    model = trilevel.patch(tiny_vit(), token_keep=0.7, attn_keep=1.0, locations=(1, 3, 4))
    model.trilevel.record = True
    with torch.no_grad():
        model(x)
    expected, n = [], 16
    for _ in range(3):
        n = math.ceil(0.7 * n)
        expected.append(n)
    assert [t.shape[1] for t in model.trilevel.last_keep_idx] == expected
    assert trilevel.tokens_per_stage(model) == [16, *expected]
    assert [p.tokens_out - 1 for p in block_plan(model)] == [16, 12, 12, 9, 7, 7]


def test_deit_tiny_stage_counts_match_the_paper():
    model = trilevel.patch(create("deit_tiny_patch16_224", {}), token_keep=0.7)
    assert trilevel.tokens_per_stage(model) == [196, 138, 97, 68]


def test_kept_indices_equal_an_independent_topk_of_cls_attention(x):
    model = tiny_vit()
    trilevel.patch(model, token_keep=0.5, attn_keep=1.0, locations=(2,))
    model.trilevel.record = True
    with torch.no_grad():
        model(x)
        # Independent computation: run blocks 0..2's attention by hand from timm's modules.
        h = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
        for blk in model.blocks[:2]:
            h = blk(h)
        blk = model.blocks[2]
        a = blk.attn
        B, N, C = h.shape
        qkv = a.qkv(blk.norm1(h)).reshape(B, N, 3, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4)
        attn = (qkv[0] @ qkv[1].transpose(-2, -1) * a.scale).softmax(-1)  # (B, H, N, N)
        cls_to_patch = attn[:, :, 0, 1:].mean(1)  # (B, 16)
        expected = cls_to_patch.topk(8, dim=1).indices.sort(dim=1).values
    assert torch.equal(model.trilevel.last_keep_idx[0], expected)


def test_connection_counts_and_mask(x):
    model = trilevel.patch(tiny_vit(), token_keep=0.75, attn_keep=0.5, locations=(1, 3))
    model.trilevel.record = True
    with torch.no_grad():
        model(x)
    conns = model.trilevel.last_connections
    assert [tuple(c.shape) for c in conns] == [(3, 12, 6), (3, 9, 5)]
    for c, n_keep in zip(conns, (12, 9)):
        assert int(c.min()) >= 0 and int(c.max()) < n_keep
        assert torch.all(c[..., 1:] > c[..., :-1])  # distinct, ascending
        mask = sel.connection_mask(c, num_prefix=1)[:, 0]  # (B, M, M)
        assert mask[:, 0].all() and mask[:, :, 0].all()  # [CLS] row and column dense
        assert torch.equal(mask[:, 1:, 1:].sum(-1), torch.full((3, n_keep), c.shape[-1]))


def test_connections_are_topk_of_restricted_attention():
    torch.manual_seed(0)
    attn = torch.rand(2, 7, 7).softmax(-1)
    idx = torch.tensor([[0, 2, 5], [1, 3, 4]])
    kept = sel.restrict_attention(attn, idx, num_prefix=1)
    seq = torch.cat([torch.zeros(2, 1, dtype=torch.long), idx + 1], 1)
    for b in range(2):
        torch.testing.assert_close(kept[b], attn[b][seq[b]][:, seq[b]])
    conn = sel.select_connections(kept, 1, 2)
    assert torch.equal(conn, kept[:, 1:, 1:].topk(2, -1).indices.sort(-1).values)


def test_attention_level_changes_later_blocks_only(x):
    model = tiny_vit()
    trilevel.patch(model, token_keep=1.0, attn_keep=1.0, locations=(3,))
    with torch.no_grad():
        dense = model(x)
        trilevel.patch(model, token_keep=1.0, attn_keep=0.25, locations=(3,))
        sparse = model(x)
        trilevel.patch(model, token_keep=1.0, attn_keep=0.25, locations=(5,))
        last_block_only = model(x)  # the mask of the last block's selector is never used
    assert not torch.allclose(dense, sparse, atol=1e-4)
    torch.testing.assert_close(last_block_only, dense, rtol=1e-5, atol=1e-5)


def test_unpatch_restores_class_and_state_dict_keys():
    model = tiny_vit()
    cls, keys = type(model), list(model.state_dict())
    n_params = sum(p.numel() for p in model.parameters())
    trilevel.patch(model, token_keep=0.5)
    trilevel.patch(model, token_keep=0.6)  # twice is harmless: settings update
    assert model.trilevel.token_keep == 0.6
    assert list(model.state_dict()) == keys
    assert sum(p.numel() for p in model.parameters()) == n_params
    trilevel.unpatch(model)
    assert type(model) is cls and not hasattr(model, "trilevel")
    trilevel.unpatch(model)  # harmless too


def test_gradients_reach_every_parameter(x):
    model = trilevel.patch(
        tiny_vit(drop_path_rate=0.1), token_keep=0.6, attn_keep=0.5, locations=(1, 3)
    ).train()
    model(x).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_attention_variance_is_recorded_and_scale_free(x):
    model = trilevel.patch(tiny_vit(), token_keep=0.7, locations=(1,), stat_layer=5)
    with torch.no_grad():
        model(x)
    var = model.trilevel.last_attn_var
    assert var.shape == (3,) and torch.all(var >= 0)
    uniform = torch.full((2, 10), 0.1)
    assert torch.allclose(sel.attention_variance(uniform), torch.zeros(2))
    peaked = torch.zeros(2, 10)
    peaked[:, 0] = 1.0
    # The same concentration over fewer tokens must give a comparable (not 1/N^2 smaller) value.
    assert sel.attention_variance(peaked)[0] == pytest.approx(9.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(token_keep=0.0), "token_keep must be in"),
        (dict(token_keep=1.5), "token_keep must be in"),
        (dict(attn_keep=-0.1), "attn_keep must be in"),
        (dict(locations=(6,)), "outside the model's blocks"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    model = tiny_vit()
    with pytest.raises(ValueError, match=message):
        trilevel.patch(model, **kwargs)
    assert not trilevel.is_patched(model)


def test_only_vision_transformers_are_patched():
    with pytest.raises(TypeError, match="VisionTransformer"):
        trilevel.patch(torch.nn.Linear(2, 2))


def test_macs_saving_of_deit_tiny_at_paper_ratios():
    model = create("deit_tiny_patch16_224", {})
    dense = trilevel.macs_per_image(model)
    assert dense == pytest.approx(1.254e9, rel=0.01)  # DeiT-T: about 1.25 GMAC
    trilevel.patch(model, token_keep=0.7, attn_keep=0.3)
    assert 0.55 < trilevel.macs_per_image(model) / dense < 0.7
