"""The patched model stays a timm model: hooks, forward_intermediates, grad checkpointing,
settings, names; and the attention level's bias equals the boolean mask it replaced."""

import pytest
import torch
import torch.nn.functional as F

import trilevel
from trilevel import models
from trilevel import selection as sel

LOCATIONS = (1, 3)


def tiny_vit(**kw):
    args = dict(img_size=16, patch_size=4, embed_dim=32, depth=6, num_heads=2, num_classes=5)
    args.update(kw)
    torch.manual_seed(0)
    return models.create("vit_tiny_patch16_224", args).eval()


def sparse_vit(**kw):
    """R_T 0.6, R_A 0.5 at blocks 1 and 3, statistics at block 4: 16 -> 10 -> 6 patch tokens."""
    return trilevel.patch(tiny_vit(**kw), token_keep=0.6, attn_keep=0.5, locations=LOCATIONS, stat_layer=4)


@pytest.fixture
def x():
    torch.manual_seed(1)
    return torch.randn(3, 3, 16, 16)


def test_hooks_fire_on_every_block_and_attention(x):
    model = sparse_vit()
    seen = []
    for i, block in enumerate(model.blocks):
        block.register_forward_hook(lambda m, args, out, i=i: seen.append(("block", i, out.shape[1])))
        block.attn.register_forward_hook(lambda m, args, out, i=i: seen.append(("attn", i, out.shape[1])))
    with torch.no_grad():
        model(x)
    tokens_out = [17, 11, 11, 7, 7, 7]  # [CLS] + 16, 10 after block 1, 6 after block 3
    tokens_in = [17, 17, 11, 11, 7, 7]
    assert sorted(s for s in seen if s[0] == "block") == [("block", i, n) for i, n in enumerate(tokens_out)]
    assert sorted(s for s in seen if s[0] == "attn") == [("attn", i, n) for i, n in enumerate(tokens_in)]


def test_forward_intermediates_are_what_the_patched_forward_computes(x):
    model = sparse_vit()
    hooked = {}
    for i, block in enumerate(model.blocks):
        block.register_forward_hook(lambda m, args, out, i=i: hooked.__setitem__(i, out))
    with torch.no_grad():
        features = model.forward_features(x)
        hooked_once = dict(hooked)
        final, inter = model.forward_intermediates(x, indices=[0, 1, 2, 3, 5], output_fmt="NLC")
    torch.testing.assert_close(final, features, rtol=0, atol=0)
    assert [t.shape[1] for t in inter] == [16, 10, 10, 6, 6]  # patch tokens (prefix split off)
    for t, i in zip(inter, [0, 1, 2, 3, 5]):
        torch.testing.assert_close(t, hooked_once[i][:, 1:], rtol=0, atol=0)


def test_forward_intermediates_refuse_a_patch_grid_after_a_selector(x):
    model = sparse_vit()
    with torch.no_grad():
        grids = model.forward_intermediates(x, indices=[0], output_fmt="NCHW", intermediates_only=True)
        assert grids[0].shape == (3, 32, 4, 4)  # before the first selector every patch is there
        with pytest.raises(ValueError, match="output_fmt='NLC'"):
            model.forward_intermediates(x, indices=[0, 2], output_fmt="NCHW")
        trilevel.patch(model, token_keep=1.0)
        grids = model.forward_intermediates(x, indices=[5], output_fmt="NCHW", intermediates_only=True)
    assert grids[0].shape == (3, 32, 4, 4)  # keep 1.0: the grid is whole, in its order


def _saved_bytes_and_grads(model, x):
    """Bytes of the tensors autograd saves for the backward pass, the output and the grads."""
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    model.zero_grad()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    out.square().sum().backward()
    return sum(saved), out.detach(), [p.grad.clone() for p in model.parameters()]


def test_grad_checkpointing_saves_memory_and_changes_nothing_else(x):
    model = sparse_vit().train()
    plain_bytes, plain_out, plain_grads = _saved_bytes_and_grads(model, x)
    plain_var = model.trilevel.last_attn_var
    model.set_grad_checkpointing(True)
    ckpt_bytes, ckpt_out, ckpt_grads = _saved_bytes_and_grads(model, x)
    # Recomputed blocks read the connection masks of the forward: same output and gradients.
    torch.testing.assert_close(ckpt_out, plain_out, rtol=0, atol=0)
    for a, b in zip(ckpt_grads, plain_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(model.trilevel.last_attn_var, plain_var)
    assert ckpt_bytes < 0.5 * plain_bytes, (ckpt_bytes, plain_bytes)


def test_a_second_patch_changes_only_the_settings_given():
    model = sparse_vit()
    trilevel.patch(model, token_keep=0.8)
    st = model.trilevel
    assert (st.token_keep, st.attn_keep, st.locations, st.stat_layer) == (0.8, 0.5, LOCATIONS, 4)
    trilevel.patch(model, stat_layer=None, locations=(2,))
    assert (st.token_keep, st.attn_keep, st.locations, st.stat_layer) == (0.8, 0.5, (2,), None)
    with pytest.raises(ValueError, match="token_keep must be in"):
        trilevel.patch(model, token_keep=0.0)
    assert st.token_keep == 0.8  # a refused update changes nothing


def test_unpatch_restores_every_class(x):
    model = tiny_vit()
    classes = [type(m) for m in model.modules()]
    with torch.no_grad():
        ref = model(x)
    trilevel.unpatch(sparse_vit())
    trilevel.patch(model, token_keep=0.5, attn_keep=0.5)
    assert [type(m) for m in model.modules()] != classes
    trilevel.unpatch(model)
    assert [type(m) for m in model.modules()] == classes
    assert not any(k.startswith("_trilevel") for m in model.modules() for k in vars(m))
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref, rtol=0, atol=0)


def test_attention_level_path_at_keep_one_changes_nothing(x):
    model = trilevel.patch(tiny_vit(), token_keep=0.6, attn_keep=1.0, locations=LOCATIONS)
    with torch.no_grad():
        ref = model(x)
        model.trilevel.attention_level = True  # every connection kept: a mask of zeros
        out = model(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_count_tensors_follow_the_model():
    model = sparse_vit()
    assert [tuple(c.shape) for c in model.trilevel.counts.values()] == [(0, 10, 5), (0, 6, 3)]
    model.trilevel.token_keep = 0.5
    assert [tuple(c.shape) for c in model.trilevel.counts.values()] == [(0, 8, 4), (0, 4, 2)]
    model.to("meta")
    assert {c.device.type for c in model.trilevel.counts.values()} == {"meta"}


def test_tagged_timm_names_are_accepted():
    name, _ = models.resolve("deit_tiny_patch16_224.fb_in1k")
    assert name == "deit_tiny_patch16_224.fb_in1k"
    with pytest.raises(ValueError, match="unknown model"):
        models.resolve("deit_tiny_patch16_224.no_such_tag")
    with pytest.raises(ValueError, match="unknown model"):
        models.resolve("no_such_model")


def test_kept_attention_equals_the_restricted_full_map():
    torch.manual_seed(0)
    q, k = torch.randn(2, 2, 9, 4), torch.randn(2, 2, 9, 4)
    mask = sel.connection_bias(torch.rand(2, 8, 8).argsort(-1)[..., :3].sort(-1).values, 1, torch.float32)
    idx = torch.tensor([[0, 2, 5, 7], [1, 3, 4, 6]])
    full = sel.head_avg_attention(sel.attention_probs(q, k, 0.5, mask))
    torch.testing.assert_close(
        sel.kept_attention(q, k, idx, 1, 0.5, mask), sel.restrict_attention(full, idx, 1)
    )


@pytest.mark.parametrize("n_keep, n_conn", [(12, 4), (15, 15), (7, 1)])
def test_bias_attention_equals_the_boolean_mask_forward_and_backward(n_keep, n_conn):
    """What the blocks after a selector now compute (SDPA with the bias) against the
    boolean-mask SDPA they ran before, and both against attention written out over each
    row's connection list."""
    torch.manual_seed(n_keep)
    B, H, D, prefix = 3, 2, 8, 1
    M = prefix + n_keep
    conn = torch.rand(B, n_keep, n_keep).argsort(-1)[..., :n_conn].sort(-1).values
    qkv = [torch.randn(B, H, M, D, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    dout = torch.randn(B, H, M, D, dtype=torch.float64)
    bias = sel.connection_bias(conn, prefix, torch.float64)
    results = []
    for attend in (
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=sel.connection_mask(conn, prefix)),
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=bias),
        lambda q, k, v: _listed_attention(q, k, v, conn, prefix),
    ):
        out = attend(*qkv)
        grads = torch.autograd.grad(out, qkv, dout)
        results.append((out, *grads))
    for other in results[1:]:
        for a, b in zip(other, results[0]):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.gpu
def test_bias_attention_on_cuda_in_bf16():
    """DeiT-T's shapes after the first selector at R_T 0.7, R_A 0.3, against float64."""
    torch.manual_seed(0)
    B, H, D, prefix, n_keep, n_conn = 64, 3, 64, 1, 138, 42
    conn = torch.rand(B, n_keep, n_keep).argsort(-1)[..., :n_conn].sort(-1).values
    ref_in = [
        torch.randn(B, H, prefix + n_keep, D, dtype=torch.float64, requires_grad=True) for _ in range(3)
    ]
    dout = torch.randn(B, H, prefix + n_keep, D, dtype=torch.float64)
    ref_out = F.scaled_dot_product_attention(*ref_in, attn_mask=sel.connection_mask(conn, prefix))
    ref = (ref_out, *torch.autograd.grad(ref_out, ref_in, dout))
    cuda_in = [t.detach().cuda().bfloat16().requires_grad_() for t in ref_in]
    bias = sel.connection_bias(conn.cuda(), prefix, torch.bfloat16)
    out = F.scaled_dot_product_attention(*cuda_in, attn_mask=bias)
    got = (out, *torch.autograd.grad(out, cuda_in, dout.cuda().bfloat16()))
    for g, r in zip(got, ref):
        rel = float((g.double().cpu() - r).norm() / r.norm())
        assert rel < 1e-2, rel


def _listed_attention(q, k, v, conn, prefix):
    """Prefix rows attend to every key; patch row r to the prefix and its listed patch keys."""
    B, H, M, D = q.shape
    rows = []
    for r in range(M):
        if r < prefix:
            keys = torch.arange(M).expand(B, -1)
        else:
            keys = torch.cat(
                [torch.arange(prefix).expand(B, -1), conn[:, r - prefix] + prefix], -1
            )  # (B, n_keys)
        gather = keys[:, None, :, None].expand(B, H, -1, D)
        kr, vr = k.gather(2, gather), v.gather(2, gather)  # (B, H, n_keys, D)
        p = ((q[:, :, r : r + 1] @ kr.transpose(-2, -1)) / D**0.5).softmax(-1)
        rows.append(p @ vr)
    return torch.cat(rows, dim=2)
