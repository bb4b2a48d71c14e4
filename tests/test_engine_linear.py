"""OP_LINEAR on the C-sim engine, bit-exact against reference ``ops_forward.linear``."""

from __future__ import annotations

import numpy as np
import pytest
from engine_harness import Program, engine
from trilevel_host.engine.abi import config
from trilevel_host.reference import ops_forward as F

SENTINEL = 0x1234


def linear_program(x, w, b, fx: int, fw: int, fb: int, fy: int, **overrides) -> Program:
    """One LINEAR descriptor over freshly allocated x (M, K), w (N, K), b (N,) or None, y (M, N).

    ``y`` starts filled with SENTINEL so tests can see whether the op wrote it; ``overrides``
    replace descriptor fields (for the error cases).
    """
    (m, k), n = x.shape, w.shape[0]
    p = Program(with_luts=False)
    tx, tw = p.tensor("x", x), p.tensor("w", w)
    ty = p.tensor("y", np.full((m, n), SENTINEL))
    fields = dict(X=tx.addr, W=tw.addr, Y=ty.addr, M=m, N=n, K=k, XS=tx.stride, WS=tw.stride, YS=ty.stride)
    fields.update(SH0=(fb - (fx + fw)) if b is not None else 0, SH1=fx + fw - fy)
    flags: tuple[str, ...] = ()
    if b is not None:
        fields["B"] = p.tensor("b", b.reshape(1, -1)).addr
        flags = ("BIAS",)
    fields.update(overrides)
    p.op("LINEAR", flags, **fields)
    return p


def run_linear(x, w, b, fx, fw, fb, fy) -> np.ndarray:
    p = linear_program(x, w, b, fx, fw, fb, fy)
    r = p.run()
    assert r.ok, r.status_name
    return p.read("y")


def random_case(rng, m, k, n, lim=2000, bias=True, blim=30000):
    x = rng.integers(-lim, lim + 1, (m, k))
    w = rng.integers(-lim, lim + 1, (n, k))
    b = rng.integers(-blim, blim + 1, n) if bias else None
    return x, w, b


SHAPES = [(1, 32, 10), (7, 16, 24), (17, 48, 65), (50, 64, 130), (3, 5, 3), (33, 9, 64)]


@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_reference(m, k, n, bias):
    rng = np.random.default_rng(m * 1000 + k * 10 + n + bias)
    x, w, b = random_case(rng, m, k, n, bias=bias)
    # fy chosen so that the largest accumulators saturate and most do not
    fx, fw, fb, fy = 9, 11, 14, 12
    y = run_linear(x, w, b, fx, fw, fb, fy)
    ref = F.linear(x, fx, w, fw, b, fb, fy)
    np.testing.assert_array_equal(y, ref)


@pytest.mark.parametrize(
    "fx,fw,fb,fy",
    [
        (8, 10, 12, 10),  # bias with fewer frac bits than the accumulator: SH0 < 0
        (4, 5, 12, 9),  # bias rounded into the accumulator: SH0 > 0
        (2, 3, 2, 8),  # output with more frac bits than the accumulator: SH1 < 0
    ],
)
def test_linear_formats_and_saturation(fx, fw, fb, fy):
    rng = np.random.default_rng(fx * 100 + fy)
    m, k, n = 17, 40, 70
    lim = 60 if fx + fw - fy < 0 else 2000
    x, w, b = random_case(rng, m, k, n, lim=lim)
    y = run_linear(x, w, b, fx, fw, fb, fy)
    np.testing.assert_array_equal(y, F.linear(x, fx, w, fw, b, fb, fy))


def test_linear_saturates_some_outputs_not_all():
    rng = np.random.default_rng(7)
    x, w, b = random_case(rng, 17, 48, 65)
    y = run_linear(x, w, b, 9, 11, 14, 12)
    saturated = np.count_nonzero(np.abs(y) >= 32767)
    assert 0 < saturated < y.size


def test_linear_saturates_the_48_bit_accumulator():
    """Bias << 46 overflows 48 bits for |b| >= 2; SH1 = 35 brings the clipped sum back into
    16 bits, so a missing accumulator saturation would show (6144 instead of 4096 for b = 3)."""
    rng = np.random.default_rng(11)
    x, w, _ = random_case(rng, 9, 24, 40, lim=100, bias=False)
    b = np.tile(np.arange(-8, 9), 3)[:40]
    fx, fw, fb, fy = 20, 20, -6, 5
    y = run_linear(x, w, b, fx, fw, fb, fy)
    np.testing.assert_array_equal(y, F.linear(x, fx, w, fw, b, fb, fy))
    assert set(np.unique(y[:, np.abs(b) >= 2]).tolist()) <= {-4096, 4095, 4096}


@pytest.mark.parametrize("m,k,n", [(7, 33, 20), (40, 100, 70)])
def test_linear_full_int16_range(m, k, n):
    rng = np.random.default_rng(m + k + n)
    x, w, b = random_case(rng, m, k, n, lim=32767, blim=32767)
    x[0, 0], w[0, 0] = -32768, -32768
    y = run_linear(x, w, b, 15, 15, 15, 12)
    np.testing.assert_array_equal(y, F.linear(x, 15, w, 15, b, 15, 12))


def test_linear_deit_tiny_qkv_shape_streams_each_weight_once():
    """(197, 192, 576): 7 row tiles x 9 column tiles; every weight beat is read once."""
    rng = np.random.default_rng(197)
    m, k, n = 197, 192, 576
    x, w, b = random_case(rng, m, k, n)
    e = engine()
    e.reset_counters()
    y = run_linear(x, w, b, 10, 12, 14, 9)
    np.testing.assert_array_equal(y, F.linear(x, 10, w, 12, b, 14, 9))
    c, beats = config(), -(-k // config()["I16_PER_WORD"])
    counts = e.counters()
    assert counts["LIN_LOAD_W"][0] == n * beats
    assert counts["LIN_LOAD_X"][0] == m * beats
    row_tiles, col_tiles = -(-m // c["MC_ROWS"]), -(-n // c["MC_COLS"])
    assert counts["LIN_MAC"] == (row_tiles * col_tiles * k, row_tiles * col_tiles)


def test_linear_head_row_max_sizes():
    """M = 1 (the head) at the widest K and N the config allows."""
    c = config()
    rng = np.random.default_rng(1)
    x, w, b = random_case(rng, 1, c["MAX_K"], 33, lim=300)
    y = run_linear(x, w, b, 8, 9, 10, 6)
    np.testing.assert_array_equal(y, F.linear(x, 8, w, 9, b, 10, 6))
    x, w, b = random_case(rng, 2, 24, c["MAX_OUT"])
    y = run_linear(x, w, b, 8, 9, 10, 6)
    np.testing.assert_array_equal(y, F.linear(x, 8, w, 9, b, 10, 6))


def _error_case(expected: str, **overrides):
    rng = np.random.default_rng(3)
    x, w, b = random_case(rng, 5, 16, 12)
    p = linear_program(x, w, b, 8, 8, 8, 8, **overrides)
    r = p.run()
    assert r.status_name == expected
    assert r.err_tag == 1
    assert np.all(p.read("y") == SENTINEL), "a refused op wrote its output"


def test_linear_refuses_sizes_over_the_config():
    c = config()
    _error_case("BAD_SIZE", M=c["MAX_TOKENS"] + 1)
    _error_case("BAD_SIZE", K=c["MAX_K"] + 1)
    _error_case("BAD_SIZE", N=c["MAX_OUT"] + 1)
    _error_case("BAD_SIZE", M=0)
    _error_case("BAD_SIZE", K=0)


def test_linear_refuses_tensors_outside_the_arena_or_misaligned():
    _error_case("BAD_ADDRESS", W=1 << 30)
    _error_case("BAD_ADDRESS", K=200)  # x and w rows are now longer than their strides
    _error_case("BAD_ADDRESS", X=2)  # not on a beat
    _error_case("BAD_ADDRESS", YS=12)  # a row stride that is not whole beats
    _error_case("BAD_ADDRESS", B=(1 << 32) - 16)


def test_linear_refuses_shift_out_of_range():
    _error_case("BAD_PARAM", SH1=63)
