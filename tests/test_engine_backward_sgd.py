"""C-sim OP_SGD against reference model.ReferenceModel.sgd_update (int32 master copy at fw + 16)."""

from __future__ import annotations

import numpy as np
import pytest
from backward_harness import format_table, grad, slots
from engine_harness import Program
from trilevel_host.engine.abi import config, split64
from trilevel_host.reference.model import LR_FRAC, ReferenceModel


def lr_q(lr: float) -> int:
    return int(np.floor(lr * 2.0**LR_FRAC + 0.5))


def reference(w, fw, master, g, fg, lr):
    """(w, master) after the reference update of one weight."""
    ref = ReferenceModel(None, {"w": w}, {"w": fw}, {})
    ref.master["w"] = np.asarray(master, np.int64)
    ref.sgd_update({"w": (g, fg)}, lr)
    return ref.w["w"], ref.master["w"]


def run_sgd(g, fg, w, fw, master, lrq, **over):
    M, N = g.shape
    p = Program(with_luts=False)
    fmt = format_table(p, {20: fg})
    tg, tw = p.tensor("g", g), p.tensor("w", w)
    tm = p.tensor("master", master, dtype=np.int32)
    fields = dict(X=tg.addr, Y=tw.addr, AUX0=tm.addr, AUX3=fmt.addr, M=M, N=N, XS=tg.stride, YS=tw.stride,
                  AS=tm.stride, SH0=fw, P3=slots(20), **split64(lrq))  # fmt: skip
    fields.update(over)
    p.op("SGD", **fields)
    return p, p.run()


@pytest.mark.parametrize("M,N", [(1, 7), (16, 48), (64, 130), (3, 1536)])
@pytest.mark.parametrize(
    "lr,fw,fg", [(1e-3, 14, 20), (0.1, 10, 30), (2e-5, 15, 9), (1.0, 8, 12), (3e-3, 40, 8)]
)
def test_matches_reference(M, N, lr, fw, fg):
    rng = np.random.default_rng(M * N + fw + fg)
    w, g = grad(rng, (M, N)), grad(rng, (M, N))
    master = (w << 16) + rng.integers(-(1 << 15), 1 << 15, size=(M, N))  # earlier updates below w's LSB
    p, r = run_sgd(g, fg, w, fw, master, lr_q(lr))
    assert r.ok, r.status_name
    w_ref, m_ref = reference(w, fw, master, g, fg, lr)
    np.testing.assert_array_equal(p.read("master"), m_ref)
    np.testing.assert_array_equal(p.read("w"), w_ref)


def test_master_and_weight_saturate_like_the_reference():
    w = np.array([[32767, -32768, 100, 0]], np.int64)
    master = np.array([[(1 << 31) - 5, -(1 << 31) + 3, 100 << 16, 0]], np.int64)
    g = np.array([[-32768, 32767, 5, 0]], np.int64)
    p, r = run_sgd(g, 0, w, 0, master, lr_q(1.0))
    assert r.ok
    w_ref, m_ref = reference(w, 0, master, g, 0, 1.0)
    assert m_ref[0, 0] == (1 << 31) - 1 and m_ref[0, 1] == -(1 << 31)
    np.testing.assert_array_equal(p.read("master"), m_ref)
    np.testing.assert_array_equal(p.read("w"), w_ref)


@pytest.mark.parametrize(
    "fg,fw,lrq",
    [
        (40, -16, lr_q(1e-3)),  # shift 40 + 24 - 0 = 64
        (-16, 40, lr_q(1e-3)),  # shift -48: |g lr_q| 2^48 would leave 63 bits
        (10, 14, 1 << 48),  # |g lr_q| itself would leave 63 bits
        (10, 14, -(1 << 62)),
    ],
)
def test_overflowing_update_is_refused_and_weights_stay(fg, fw, lrq):
    rng = np.random.default_rng(4)
    w, g = grad(rng, (4, 16)), grad(rng, (4, 16))
    master = w << 16
    p, r = run_sgd(g, fg, w, fw, master, lrq)
    assert r.status_name == "BAD_PARAM"
    np.testing.assert_array_equal(p.read("w"), w)
    np.testing.assert_array_equal(p.read("master"), master)


@pytest.mark.parametrize(
    "over,status",
    [
        (dict(X=1 << 26), "BAD_ADDRESS"),  # the gradient outside the arena
        (dict(XS=4), "BAD_ADDRESS"),  # the gradient's rows overlap
        (dict(AUX0=1 << 26), "BAD_ADDRESS"),
        (dict(N=config()["MAX_K"] + 1), "BAD_SIZE"),
        (dict(P3=slots(21)), "BAD_PARAM"),  # no format in that slot
        (dict(SH0=41), "BAD_PARAM"),
    ],
)
def test_bad_descriptor_leaves_weights_untouched(over, status):
    rng = np.random.default_rng(5)
    w, g = grad(rng, (4, 16)), grad(rng, (4, 16))
    p, r = run_sgd(g, 12, w, 14, w << 16, lr_q(0.01), **over)
    assert r.status_name == status
    np.testing.assert_array_equal(p.read("w"), w)
    np.testing.assert_array_equal(p.read("master"), w << 16)


def test_zero_learning_rate_changes_nothing_at_any_format():
    rng = np.random.default_rng(6)
    w, g = grad(rng, (2, 8)), grad(rng, (2, 8))
    p, r = run_sgd(g, -16, w, 40, w << 16, 0)
    assert r.ok
    np.testing.assert_array_equal(p.read("w"), w)
