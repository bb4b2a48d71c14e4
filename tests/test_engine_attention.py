"""OP_ATTENTION in C-sim against the numpy reference, bit for bit: dense and over connection
lists, the MAP output (head-summed wide probabilities) and the PROBS output (stored
probabilities in key-list order), and the descriptor checks."""

from __future__ import annotations

import numpy as np
import pytest
from engine_harness import Program, engine
from trilevel_host.reference import ops_forward as F

SENTINEL = 0x1234


def random_qkv(rng, M: int, C: int, amp: int) -> np.ndarray:
    return rng.integers(-amp, amp + 1, size=(M, 3 * C))


def random_lists(rng, n_patch: int, n_conn: int) -> np.ndarray:
    """(n_patch, n_conn) ascending distinct patch indices per row, like OP_SELECT writes them."""
    return np.stack([np.sort(rng.choice(n_patch, n_conn, replace=False)) for _ in range(n_patch)])


def run_attention(qkv, heads, fqkv, fctx, prefix=1, conn=None, want_map=False, want_probs=False, fill=None):
    """One OP_ATTENTION; returns (status name, ctx (M, C), map (M, M) or None, probs (H M, M) or None).

    fill: initial value of every output tensor (to see which rows the op wrote)."""
    M, C = qkv.shape[0], qkv.shape[1] // 3
    D = C // heads
    sh = F.scale_shift(D) if D & (D - 1) == 0 and int(np.log2(D)) % 2 == 0 else 0
    p = Program()
    x = p.tensor("qkv", qkv)

    def out(name, rows, cols, dtype):
        init = None if fill is None else np.full((rows, cols), fill)
        return p.tensor(name, init, rows=rows, cols=cols, dtype=dtype)

    y = out("ctx", M, C, np.int16)
    fields = dict(X=x.addr, XS=x.stride, Y=y.addr, YS=y.stride, M=M, N=C, P0=heads, P1=prefix)
    fields.update(SH0=2 * fqkv + sh - 14, SH1=15 + fqkv - fctx)
    flags = []
    if conn is not None:
        lists = p.tensor("conn", conn, dtype=np.int32)
        fields.update(AUX0=lists.addr, AS=lists.stride, P2=conn.shape[1])
        flags.append("SPARSE")
    if want_map:
        fields["AUX1"] = out("map", M, M, np.int32).addr
        flags.append("MAP")
    if want_probs:
        fields["AUX2"] = out("probs", heads * M, M, np.int16).addr
        flags.append("PROBS")
    p.op("ATTENTION", tuple(flags), **fields)
    r = p.run()
    return (
        r.status_name,
        p.read("ctx"),
        p.read("map") if want_map else None,
        p.read("probs") if want_probs else None,
    )


def probs_in_list_order(p, conn, prefix: int) -> np.ndarray:
    """(H, M, M) probabilities -> (H M, M) rows over each row's key list, zeros beyond."""
    H, M, _ = p.shape
    out = np.zeros((H, M, M), dtype=np.int64)
    for i in range(M):
        keys = (
            np.arange(M)
            if conn is None or i < prefix
            else np.r_[np.arange(prefix), prefix + conn[i - prefix]]
        )
        out[:, i, : keys.size] = p[:, i, keys]
    return out.reshape(H * M, M)


@pytest.mark.parametrize(
    "M, C, heads, fqkv, fctx, amp",
    [
        (5, 32, 2, 10, 10, 1500),
        (17, 64, 4, 12, 11, 6000),
        (50, 64, 4, 9, 9, 32767),  # sharp softmax: many keys at the exp table's floor
        (1, 16, 1, 10, 12, 32767),  # one token: p = 1 saturates to 32767
        (7, 12, 3, 11, 13, 32767),  # D = 4, C not a multiple of 8; ctx saturates
        (9, 3, 3, 6, 6, 200),  # D = 1
        (13, 96, 6, 3, 4, 100),  # SH0 < 0: a left shift into the exp input
    ],
)
def test_dense_attention_matches_reference(M, C, heads, fqkv, fctx, amp):
    rng = np.random.default_rng(M * 1000 + C)
    qkv = random_qkv(rng, M, C, amp)
    status, ctx, amap, probs = run_attention(qkv, heads, fqkv, fctx, want_map=True, want_probs=True)
    assert status == "DONE"
    ref_ctx, ref_p, ref_pw = F.attention(qkv[None], fqkv, heads, fctx)
    np.testing.assert_array_equal(ctx, ref_ctx[0])
    np.testing.assert_array_equal(amap, ref_pw[0].sum(0))
    np.testing.assert_array_equal(probs, probs_in_list_order(ref_p[0], None, 1))


def test_saturating_ctx_is_exercised():
    rng = np.random.default_rng(3)
    qkv = random_qkv(rng, 7, 12, 32767)
    status, ctx, _, _ = run_attention(qkv, 3, 11, 13)
    assert status == "DONE"
    ref = F.attention(qkv[None], 11, 3, 13)[0][0]
    assert np.any(np.abs(ref) >= 32767)  # the case really saturates
    np.testing.assert_array_equal(ctx, ref)


def test_deit_size_dense_attention():
    rng = np.random.default_rng(197)
    qkv = random_qkv(rng, 197, 192, 5000)
    status, ctx, _, _ = run_attention(qkv, 3, 11, 11)
    assert status == "DONE"
    np.testing.assert_array_equal(ctx, F.attention(qkv[None], 11, 3, 11)[0][0])


@pytest.mark.parametrize(
    "M, C, heads, n_conn",
    [(5, 32, 2, 1), (17, 64, 4, 1), (17, 64, 4, 5), (17, 64, 4, 16), (50, 64, 4, 15), (9, 12, 3, 3)],
)
def test_sparse_attention_matches_both_references(M, C, heads, n_conn):
    rng = np.random.default_rng(M * 100 + n_conn)
    qkv = random_qkv(rng, M, C, 4000)
    prefix = 1
    conn = random_lists(rng, M - prefix, n_conn)
    status, ctx, amap, probs = run_attention(qkv, heads, 10, 10, prefix, conn, want_map=True, want_probs=True)
    assert status == "DONE"
    mask = F.connection_mask(conn[None], prefix)
    ref_ctx, ref_p, ref_pw = F.attention(qkv[None], 10, heads, 10, mask)
    np.testing.assert_array_equal(ctx, F.attention_sparse(qkv[None], 10, heads, 10, conn[None], prefix)[0])
    np.testing.assert_array_equal(ctx, ref_ctx[0])
    np.testing.assert_array_equal(amap, ref_pw[0].sum(0))
    assert np.all(amap[prefix:][~mask[0, 0, prefix:]] == 0)
    np.testing.assert_array_equal(probs, probs_in_list_order(ref_p[0], conn, prefix))


def test_sparse_with_every_connection_equals_dense():
    rng = np.random.default_rng(11)
    qkv = random_qkv(rng, 17, 64, 3000)
    conn = np.tile(np.arange(16), (16, 1))
    sparse = run_attention(qkv, 4, 10, 10, 1, conn, want_map=True, want_probs=True)
    dense = run_attention(qkv, 4, 10, 10, want_map=True, want_probs=True)
    for a, b in zip(sparse, dense, strict=True):
        np.testing.assert_array_equal(a, b)


def test_lists_without_prefix_tokens():
    rng = np.random.default_rng(5)
    qkv = random_qkv(rng, 8, 16, 3000)
    conn = random_lists(rng, 8, 3)
    status, ctx, amap, _ = run_attention(qkv, 1, 10, 10, 0, conn, want_map=True)
    assert status == "DONE"
    ref_ctx, _, ref_pw = F.attention(qkv[None], 10, 1, 10, F.connection_mask(conn[None], 0))
    np.testing.assert_array_equal(ctx, ref_ctx[0])
    np.testing.assert_array_equal(amap, ref_pw[0].sum(0))


@pytest.mark.parametrize("bad", [16, -1])
def test_bad_connection_index_stops_before_its_row(bad):
    rng = np.random.default_rng(7)
    M, C, heads, prefix, r = 17, 32, 2, 1, 6
    qkv = random_qkv(rng, M, C, 3000)
    conn = random_lists(rng, M - prefix, 4)
    good = conn.copy()
    conn[r, 2] = bad
    status, ctx, amap, probs = run_attention(qkv, heads, 10, 10, prefix, conn, True, True, fill=SENTINEL)
    assert status == "BAD_INDEX"
    stop = prefix + r  # the first row that is not written
    ref_ctx, ref_p, ref_pw = F.attention(qkv[None], 10, heads, 10, F.connection_mask(good[None], prefix))
    np.testing.assert_array_equal(ctx[:stop], ref_ctx[0, :stop])
    np.testing.assert_array_equal(amap[:stop], ref_pw[0].sum(0)[:stop])
    assert np.all(ctx[stop:] == SENTINEL) and np.all(amap[stop:] == SENTINEL)
    probs = probs.reshape(heads, M, M)
    np.testing.assert_array_equal(
        probs[:, :stop], probs_in_list_order(ref_p[0], good, prefix).reshape(heads, M, M)[:, :stop]
    )
    assert np.all(probs[:, stop:] == SENTINEL)


def test_counters_follow_the_row_loops():
    e = engine()
    rng = np.random.default_rng(2)
    e.reset_counters()
    assert run_attention(random_qkv(rng, 17, 64, 3000), 4, 10, 10, want_map=True)[0] == "DONE"
    c = e.counters()
    groups = -(-17 // 4)  # CFG_ATTN_KEYS = 4 keys per cycle
    for name in ("ATTN_QK", "ATTN_EXP", "ATTN_PV"):
        assert c[name] == (17 * groups, 17)
    assert c["ATTN_RECIP"] == (17 * 4, 17)
    assert c["ATTN_KV_LOAD"] == (17 * (3 * 64 // 8 - 64 // 8), 1)
    assert c["ATTN_MAP_SCATTER"] == (17 * 17, 17) and c["ATTN_MAP_STORE"] == (17 * 5, 17)


def error_status(M=5, C=32, heads=2, prefix=1, n_conn=None, **override) -> str:
    """Status of an attention descriptor built for a valid (M, C, heads) and then overridden."""
    p = Program()
    x = p.tensor("qkv", rows=max(M, 1), cols=3 * C)
    y = p.tensor("ctx", rows=max(M, 1), cols=C)
    lists = p.tensor("conn", np.zeros((4, 4)), dtype=np.int32)
    fields = dict(X=x.addr, XS=x.stride, Y=y.addr, YS=y.stride, M=M, N=C, P0=heads, P1=prefix, SH0=0, SH1=0)
    flags = ()
    if n_conn is not None:
        fields.update(AUX0=lists.addr, AS=lists.stride, P2=n_conn)
        flags = ("SPARSE",)
    last_beat = (
        p.arena.size + (len(p.descs) + 1) * 128 - 16
    )  # the program (one more descriptor) ends the arena
    fields.update({k: (last_beat if v == "last beat" else v) for k, v in override.items() if k != "flags"})
    p.op("ATTENTION", flags + override.get("flags", ()), **fields)
    return p.run().status_name


def test_descriptor_checks():
    assert error_status() == "DONE"
    assert error_status(C=32, heads=4) == "BAD_PARAM"  # D = 8: no shift for the scale
    assert error_status(C=24, heads=3) == "BAD_PARAM"  # D = 8
    assert error_status(C=32, heads=3) == "BAD_PARAM"  # C not a multiple of heads
    assert error_status(M=0) == "BAD_SIZE"
    assert error_status(M=198) == "BAD_SIZE"
    assert error_status(C=448, heads=7) == "BAD_SIZE"  # C > CFG_MAX_DIM
    assert error_status(C=112, heads=7) == "BAD_SIZE"  # heads > CFG_MAX_HEADS
    assert error_status(C=256, heads=1) == "BAD_SIZE"  # D = 256 > CFG_MAX_HEAD_DIM
    assert error_status(prefix=2) == "BAD_SIZE"  # > CFG_MAX_PREFIX
    assert error_status(n_conn=0) == "BAD_SIZE"
    assert error_status(n_conn=5) == "BAD_SIZE"  # more than the 4 patch tokens
    assert error_status(n_conn=4) == "DONE"
    assert error_status(M=1, n_conn=1) == "BAD_SIZE"  # sparse without patch rows


def test_tensors_outside_the_arena_are_refused():
    assert error_status(X=1 << 30) == "BAD_ADDRESS"
    assert error_status(Y=(1 << 30) + 16) == "BAD_ADDRESS"
    assert error_status(XS=88) == "BAD_ADDRESS"  # row stride shorter than 3C
    assert error_status(flags=("MAP",), AUX1="last beat") == "BAD_ADDRESS"  # starts inside, ends outside
    assert error_status(flags=("PROBS",), AUX2="last beat") == "BAD_ADDRESS"
    assert error_status(flags=("PROBS",), AUX2=1 << 30) == "BAD_ADDRESS"
    assert error_status(n_conn=4, AUX0=(1 << 30)) == "BAD_ADDRESS"
    p = Program()
    x = p.tensor("qkv", rows=5, cols=96)
    p.op("ATTENTION", X=x.addr + 2, XS=x.stride, Y=x.addr, YS=x.stride, M=5, N=32, P0=2)
    assert p.run().status_name == "BAD_ADDRESS"  # not on a beat
