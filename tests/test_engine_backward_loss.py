"""C-sim OP_CE_GRAD against reference ops_backward.cross_entropy_grad."""

from __future__ import annotations

import numpy as np
import pytest
from backward_harness import GARBAGE, format_table, garbage, slots
from engine_harness import Program
from trilevel_host.engine.abi import config
from trilevel_host.reference import ops_backward as B


def run_ce(logits, flog, labels, **over):
    M, N = logits.shape
    p = Program()
    fmt = format_table(p)
    tx = p.tensor("logits", logits)
    tl = p.tensor("labels", np.asarray(labels).reshape(1, -1), dtype=np.int32)
    ty = p.tensor("dlogits", garbage(M, N))
    fields = dict(X=tx.addr, AUX0=tl.addr, Y=ty.addr, AUX3=fmt.addr, M=M, N=N, XS=tx.stride, YS=ty.stride,
                  SH0=flog, P3=slots(4))  # fmt: skip
    fields.update(over)
    p.op("CE_GRAD", **fields)
    return p, p.run()


@pytest.mark.parametrize("M,N", [(1, 10), (1, 1000), (3, 17), (5, 100)])
@pytest.mark.parametrize("flog", [-4, 3, 8, 12, 25])
def test_matches_reference(M, N, flog):
    rng = np.random.default_rng(M * N + flog + 100)
    logits = rng.integers(-32768, 32768, size=(M, N))
    labels = rng.integers(0, N, size=M)
    p, r = run_ce(logits, flog, labels)
    assert r.ok, r.status_name
    dl, fdl = B.cross_entropy_grad(logits, flog, labels)
    np.testing.assert_array_equal(p.read("dlogits"), dl)
    assert p.read("fmt")[0, 4] == fdl == 15


def test_certain_right_and_wrong_answers_saturate_like_the_reference():
    """p = 1.0 saturates to 32767 (so the label's gradient is -1 LSB); p = 0 at the label gives -32768."""
    logits = np.zeros((2, 10), np.int64)
    logits[:, 3] = 30000
    p, r = run_ce(logits, 8, [3, 4])
    assert r.ok
    dl, _ = B.cross_entropy_grad(logits, 8, [3, 4])
    assert dl[0, 3] == -1 and dl[1, 4] == -32768 and dl[1, 3] == 32767
    np.testing.assert_array_equal(p.read("dlogits"), dl)


@pytest.mark.parametrize("bad", [10, -1, 1 << 20])
def test_label_out_of_range_writes_nothing(bad):
    logits = np.arange(30).reshape(3, 10)
    p, r = run_ce(logits, 8, [1, bad, 2])
    assert r.status_name == "BAD_INDEX"
    assert (p.read("dlogits") == GARBAGE).all() and p.read("fmt")[0, 4] == -99


@pytest.mark.parametrize(
    "over,status",
    [
        (dict(N=config()["MAX_OUT"] + 1), "BAD_SIZE"),
        (dict(M=0), "BAD_SIZE"),
        (dict(AUX0=1 << 26), "BAD_ADDRESS"),
        (dict(X=8), "BAD_ADDRESS"),  # not on a beat
        (dict(SH0=-17), "BAD_PARAM"),
    ],
)
def test_bad_descriptor_writes_nothing(over, status):
    p, r = run_ce(np.arange(20).reshape(2, 10), 8, [1, 2], **over)
    assert r.status_name == status
    assert (p.read("dlogits") == GARBAGE).all()
