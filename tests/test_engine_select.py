"""OP_SELECT (the TA-Selector) and OP_GATHER in C-sim against the numpy reference, bit for bit:
token and connection top-k with many exact ties, origin composition over two selectors, the
token gather, and the descriptor checks."""

from __future__ import annotations

import numpy as np
import pytest
from engine_harness import Program
from trilevel_host.reference import ops_forward as F
from trilevel_host.reference.model import keep_count

SENTINEL = 0x1234


def add_select(p, amap, prefix, n_keep, n_conn, origin_in=None, name="", fill=None, **override):
    """Allocate the outputs of one OP_SELECT over the (M, M) map tensor ``amap`` and append it."""
    init = (lambda r, c: np.full((r, c), fill)) if fill is not None else (lambda r, c: None)
    y = p.tensor(name + "idx", init(1, n_keep), rows=1, cols=n_keep, dtype=np.int32)
    org = p.tensor(name + "origin", init(1, n_keep), rows=1, cols=n_keep, dtype=np.int32)
    fields = dict(
        X=amap.addr, XS=amap.stride, M=amap.rows, P1=prefix, P2=n_keep, P3=n_conn, Y=y.addr, AUX2=org.addr
    )
    if n_conn:
        lists = p.tensor(name + "conn", init(n_keep, n_conn), rows=n_keep, cols=n_conn, dtype=np.int32)
        fields.update(AUX0=lists.addr, AS=lists.stride)
    flags = ()
    if origin_in is not None:
        fields["AUX1"] = origin_in.addr
        flags = ("ORIGIN",)
    fields.update(override)
    p.op("SELECT", flags, **fields)


def reference_select(amap, prefix, n_keep, n_conn):
    probs = np.asarray(amap, dtype=np.int64)[None, None]  # (B=1, H=1, M, M): the head sum is the map
    idx = F.select_tokens(probs, prefix, n_keep)
    conn = F.select_connections(probs, idx, prefix, n_conn) if n_conn else None
    return idx[0], None if conn is None else conn[0]


@pytest.mark.parametrize("M", [2, 17, 50, 197])
@pytest.mark.parametrize("token_keep", [1.0, 0.7, 0.5])
@pytest.mark.parametrize("attn_keep", [1.0, 0.3])
def test_select_matches_reference_with_ties(M, token_keep, attn_keep):
    rng = np.random.default_rng(M + int(100 * token_keep) + int(10 * attn_keep))
    top = 4 if M > 2 else 1  # scores 0..3: most comparisons are exact ties
    amap = rng.integers(0, top, size=(M, M))
    n_keep = keep_count(M - 1, token_keep)
    n_conn = keep_count(n_keep, attn_keep)
    p = Program(with_luts=False)
    add_select(p, p.tensor("map", amap, dtype=np.int32), 1, n_keep, n_conn)
    assert p.run().status_name == "DONE"
    idx, conn = reference_select(amap, 1, n_keep, n_conn)
    np.testing.assert_array_equal(p.read("idx")[0], idx)
    np.testing.assert_array_equal(p.read("origin")[0], idx)  # no ORIGIN: the first selector's origin is idx
    np.testing.assert_array_equal(p.read("conn"), conn)


def test_select_wide_scores_and_token_level_only():
    rng = np.random.default_rng(9)
    amap = rng.integers(-(2**31), 2**31, size=(50, 50))
    amap[0, 10:20] = amap[0, 5]  # a run of ties among large values
    p = Program(with_luts=False)
    add_select(p, p.tensor("map", amap, dtype=np.int32), 1, 20, 0)
    assert p.run().status_name == "DONE"
    np.testing.assert_array_equal(p.read("idx")[0], reference_select(amap, 1, 20, 0)[0])


def test_attention_map_feeds_select_like_the_reference_model():
    """ATTENTION (MAP) -> SELECT in one program, against model.py's chain on the same qkv."""
    rng = np.random.default_rng(4)
    M, C, heads, prefix = 50, 64, 4, 1
    qkv = rng.integers(-4000, 4001, size=(M, 3 * C))
    n_keep = keep_count(M - prefix, 0.7)
    n_conn = keep_count(n_keep, 0.3)
    p = Program()
    x = p.tensor("qkv", qkv)
    y = p.tensor("ctx", rows=M, cols=C)
    amap = p.tensor("map", rows=M, cols=M, dtype=np.int32)
    p.op("ATTENTION", ("MAP",), X=x.addr, XS=x.stride, Y=y.addr, YS=y.stride, M=M, N=C, P0=heads, P1=prefix,
         SH0=2 * 10 + 2 - 14, SH1=15 + 10 - 10, AUX1=amap.addr)  # fmt: skip
    add_select(p, amap, prefix, n_keep, n_conn)
    assert p.run().status_name == "DONE"
    _, _, p_wide = F.attention(qkv[None], 10, heads, 10)
    idx = F.select_tokens(p_wide, prefix, n_keep)
    np.testing.assert_array_equal(p.read("idx"), idx)
    np.testing.assert_array_equal(p.read("conn"), F.select_connections(p_wide, idx, prefix, n_conn)[0])


def test_origin_composes_over_two_selectors():
    rng = np.random.default_rng(6)
    M1 = 197
    k1 = keep_count(M1 - 1, 0.7)
    M2 = 1 + k1
    k2 = keep_count(k1, 0.7)
    map1 = rng.integers(0, 5, size=(M1, M1))
    map2 = rng.integers(0, 5, size=(M2, M2))
    p = Program(with_luts=False)
    add_select(p, p.tensor("map1", map1, dtype=np.int32), 1, k1, 0, name="s1.")
    add_select(
        p,
        p.tensor("map2", map2, dtype=np.int32),
        1,
        k2,
        0,
        origin_in=p.arena.tensors["s1.origin"],
        name="s2.",
    )
    assert p.run().status_name == "DONE"
    idx1, _ = reference_select(map1, 1, k1, 0)
    idx2, _ = reference_select(map2, 1, k2, 0)
    np.testing.assert_array_equal(p.read("s1.origin")[0], idx1)
    np.testing.assert_array_equal(p.read("s2.idx")[0], idx2)
    np.testing.assert_array_equal(p.read("s2.origin")[0], idx1[idx2])  # model.py: origin[idx]


@pytest.mark.parametrize("bad, used", [(196, True), (-1, True), (196, False)])
def test_bad_origin_index_is_refused_before_any_output(bad, used):
    amap = np.zeros((9, 9), dtype=np.int64)
    amap[0, 1:5] = 10  # keeps patches 0..3
    origin = np.arange(8) * 3
    origin[2 if used else 6] = bad
    p = Program(with_luts=False)
    add_select(
        p,
        p.tensor("map", amap, dtype=np.int32),
        1,
        4,
        2,
        p.tensor("o", origin, dtype=np.int32),
        fill=SENTINEL,
    )
    status = p.run().status_name
    if not used:
        assert status == "DONE"
        np.testing.assert_array_equal(p.read("origin")[0], origin[:4])
        return
    assert status == "BAD_INDEX"
    for name in ("idx", "origin", "conn"):
        assert np.all(p.read(name) == SENTINEL)


def select_status(M=9, prefix=1, n_keep=4, n_conn=2, **override) -> str:
    p = Program(with_luts=False)
    amap = p.tensor("map", np.zeros((9, 9)), dtype=np.int32)
    add_select(p, amap, prefix, max(n_keep, 1), n_conn, M=M, P2=n_keep, **override)
    return p.run().status_name


def test_select_descriptor_checks():
    assert select_status() == "DONE"
    assert select_status(n_keep=0) == "BAD_SIZE"
    assert select_status(n_keep=9) == "BAD_SIZE"  # more than the 8 patches
    assert select_status(n_conn=5) == "BAD_SIZE"  # more than n_keep
    assert select_status(M=198) == "BAD_SIZE"
    assert select_status(M=1) == "BAD_SIZE"  # no patch tokens
    assert select_status(P1=2) == "BAD_SIZE"
    assert select_status(P1=0) == "BAD_PARAM"  # no [CLS] row to rank by
    assert select_status(X=1 << 30) == "BAD_ADDRESS"
    assert select_status(AUX0=1 << 30) == "BAD_ADDRESS"
    assert select_status(XS=4) == "BAD_ADDRESS"  # map rows overlap


# ---------------------------------------------------------------------------------------- gather


def run_gather(x, idx, prefix, K=None, fill=None, in_place=False):
    """OP_GATHER of x's first K columns; returns (status, Y, Y's padded view)."""
    K = x.shape[1] if K is None else K
    p = Program(with_luts=False)
    xt = p.tensor("x", x)
    it = p.tensor("idx", idx, dtype=np.int32)
    rows = prefix + len(idx)
    yt = (
        xt
        if in_place
        else p.tensor("y", None if fill is None else np.full((rows, K), fill), rows=rows, cols=K)
    )
    p.op("GATHER", X=xt.addr, XS=xt.stride, AUX0=it.addr, Y=yt.addr, YS=yt.stride, M=x.shape[0] - prefix,
         N=len(idx), K=K, P1=prefix)  # fmt: skip
    status = p.run().status_name
    y = p.arena.view(yt)[:rows]
    return status, y[:, :K].astype(np.int64), y


@pytest.mark.parametrize("K", [1, 7, 64, 192, 1536])
@pytest.mark.parametrize("prefix", [0, 1])
def test_gather_matches_reference(K, prefix):
    rng = np.random.default_rng(K + prefix)
    x = rng.integers(-32768, 32768, size=(prefix + 30, K))
    idx = rng.integers(0, 30, size=21)  # any order, repeats allowed
    status, y, _ = run_gather(x, idx, prefix)
    assert status == "DONE"
    np.testing.assert_array_equal(y, F.gather_tokens(x[None], idx[None], prefix)[0])


def test_gather_writes_zero_padding_and_reads_only_k_columns():
    rng = np.random.default_rng(1)
    x = rng.integers(1, 1000, size=(11, 16))  # wider than K: the lanes past K hold data
    status, y, view = run_gather(x, np.array([9, 0, 3]), 1, K=5)
    assert status == "DONE"
    np.testing.assert_array_equal(y, x[[0, 10, 1, 4], :5])
    assert np.all(view[:, 5:] == 0)


def test_gather_in_place_with_ascending_indices():
    rng = np.random.default_rng(2)
    x = rng.integers(-500, 500, size=(197, 64))
    idx = np.sort(rng.choice(196, 137, replace=False))
    status, y, _ = run_gather(x, idx, 1, in_place=True)
    assert status == "DONE"
    np.testing.assert_array_equal(y, F.gather_tokens(x[None], idx[None], 1)[0])


@pytest.mark.parametrize("bad", [30, -1])
def test_gather_bad_index_writes_nothing(bad):
    x = np.ones((31, 8), dtype=np.int64)
    idx = np.arange(10)
    idx[7] = bad
    status, y, _ = run_gather(x, idx, 1, fill=SENTINEL)
    assert status == "BAD_INDEX"
    assert np.all(y == SENTINEL)


def test_gather_descriptor_checks():
    def status(**override):
        p = Program(with_luts=False)
        xt = p.tensor("x", rows=11, cols=8)
        it = p.tensor("idx", np.arange(4), dtype=np.int32)
        yt = p.tensor("y", rows=5, cols=8)
        fields = dict(X=xt.addr, XS=xt.stride, AUX0=it.addr, Y=yt.addr, YS=yt.stride, M=10, N=4, K=8, P1=1)
        fields.update(override)
        p.op("GATHER", **fields)
        return p.run().status_name

    assert status() == "DONE"
    assert status(K=0) == "BAD_SIZE"
    assert status(K=1537) == "BAD_SIZE"
    assert status(M=197) == "BAD_SIZE"  # with the prefix, more than CFG_MAX_TOKENS rows
    assert status(N=0) == "BAD_SIZE"
    assert status(P1=2) == "BAD_SIZE"
    assert status(Y=1 << 30) == "BAD_ADDRESS"
    assert status(AUX0=(1 << 30) + 4) == "BAD_ADDRESS"
    assert status(XS=4) == "BAD_ADDRESS"  # not a whole beat
