"""The cycle model's loop counts against the C-sim's loop-iteration counters, op by op.

A tiny ViT's programs (tests/tiny_vit.py's shape, random weights: trip counts do not depend on
the values), the forward and the training step (forward with caches, backward, SGD), run
descriptor by descriptor through the C-sim; after each, every SIM_LOOP counter (trips and loop
entries) must equal what host/trilevel_host/engine/cycle_model.py computes from that
descriptor. Dense and with TA-Selectors (R_T 0.7, R_A 0.3). A few single ops cover what the
tiny model does not reach (a 224x224 PATCHIFY, row and column tiles of DeiT size forward and
backward, a sparse attention backward), and a whole DeiT-T/0.7 forward is checked in one start.
"""

from __future__ import annotations

import numpy as np
import pytest
from backward_harness import attention_case, format_table, grad, run_attn, slots
from engine_harness import Program, engine
from trilevel_host.engine import cycle_model as cm
from trilevel_host.engine.abi import abi
from trilevel_host.engine.program import build_program
from trilevel_host.engine.synthetic import synthetic_package
from trilevel_host.engine.train_program import build_train_program


def _model_counters(words: np.ndarray) -> dict[str, tuple[int, int]]:
    """The model's counters of one descriptor, zeros included for every counter it does not touch."""
    got = cm.op_cost(words).counters()
    return {k: got.get(k, (0, 0)) for k in abi()["counters"] if k != "COUNT"}


def _write_input(prog, arena: np.ndarray) -> None:
    """A random image (any values: trip counts do not depend on them) into the program's input."""
    cfg, t = prog.cfg, prog.arena.tensors["input"]
    image = np.random.default_rng(1).integers(-512, 512, size=(cfg.in_chans * cfg.img_size, cfg.img_size))
    arena[t.addr : t.addr + t.nbytes].view(np.int16).reshape(t.rows, t.stride)[:, : t.cols] = image


def _run_op_by_op(arena: np.ndarray, prog: int, n: int, names: list[str]) -> int:
    """Runs descriptors one at a time; asserts the counters after each. Returns the ops checked."""
    eng = engine()
    descs = arena[prog : prog + n * abi()["abi"]["DESC_BYTES"]].view(np.uint32).reshape(n, -1)
    for i in range(n):
        eng.reset_counters()
        r = eng.run(arena, prog + i * abi()["abi"]["DESC_BYTES"], 1)
        assert r.ok, f"op {i} ({names[i]}) stopped with {r.status_name}"
        assert eng.counters() == _model_counters(descs[i]), f"op {i} ({names[i]})"
    return n


@pytest.mark.parametrize("keep", [1.0, 0.7], ids=["dense", "selectors"])
def test_model_counts_equal_csim_counters_for_every_op_of_a_tiny_vit_forward(keep):
    pkg = synthetic_package("tiny", token_keep=keep, attn_keep=0.3 if keep < 1 else 1.0)
    prog = build_program(pkg)
    arena = prog.image.copy()
    _write_input(prog, arena)
    kinds = set()
    for which, ops in (("setup", prog.setup), ("forward", prog.forward)):
        addr, n = prog.program(which)
        _run_op_by_op(arena, addr, n, [op.name for op in ops])
        kinds |= {op.kind for op in ops}
    expected = {"LOAD_LUT", "PATCHIFY", "LINEAR", "ADD", "LAYERNORM", "ATTENTION", "GELU"}
    if keep < 1:
        expected |= {"SELECT", "GATHER"}
        assert any("SPARSE" in op.flags for op in prog.forward)
    assert expected <= kinds


def test_whole_deit_tiny_forward_at_0_7_in_one_start():
    """DeiT-T/224 Tri-Level/0.7 (R_A 0.3) in one start: the counter totals equal the model's (~15 s)."""
    prog = build_program(synthetic_package("deit_tiny_patch16_224", token_keep=0.7, attn_keep=0.3))
    arena = prog.image.copy()
    addr, n = prog.program("forward")
    eng = engine()
    eng.reset_counters()
    assert eng.run(arena, addr, n).ok
    descs = arena[addr : addr + n * abi()["abi"]["DESC_BYTES"]].view(np.uint32).reshape(n, -1)
    model = cm.program_cost(descs).counters()
    assert eng.counters() == {k: model.get(k, (0, 0)) for k in abi()["counters"] if k != "COUNT"}


@pytest.mark.parametrize("keep", [1.0, 0.7], ids=["dense", "selectors"])
def test_model_counts_equal_csim_counters_for_every_op_of_a_tiny_vit_training_step(keep):
    pkg = synthetic_package("tiny", token_keep=keep, attn_keep=0.3 if keep < 1 else 1.0)
    prog = build_train_program(pkg, lr=1e-3)
    arena = prog.image.copy()
    _write_input(prog, arena)
    label = prog.arena.tensors["label"]
    arena[label.addr : label.addr + 4].view(np.int32)[0] = 3
    addr, n = prog.program("setup")
    _run_op_by_op(arena, addr, n, [op.name for op in prog.setup])
    addr, n = prog.program("train")
    ops = prog.forward + prog.backward
    _run_op_by_op(arena, addr, n, [op.name for op in ops])
    kinds = {op.kind for op in prog.backward}
    expected = {"CE_GRAD", "LINEAR_BWD_DX", "LINEAR_BWD_DW", "LAYERNORM_BWD", "GELU_BWD", "ATTENTION_BWD",
                "GRAD_ADD", "GRAD_REQUANT", "SGD"} | ({"SCATTER"} if keep < 1 else set())  # fmt: skip
    assert expected <= kinds


def _single(p: Program) -> None:
    """Runs the harness program's last descriptor alone (the tables are loaded first)."""
    res = p.run()
    assert res.ok, res.status_name
    addr = p.arena.tensors["program"].addr
    n = len(p.descs)
    _run_op_by_op(p.arena.buf, addr + (n - 1) * abi()["abi"]["DESC_BYTES"], 1, ["last"])


def test_deit_size_shapes_patchify_linear_layernorm_cache():
    rng = np.random.default_rng(2)
    p = Program()
    img = p.tensor("img", rng.integers(-100, 100, size=(3 * 224, 224)))
    patches = p.tensor("patches", rows=196, cols=768)
    p.op("PATCHIFY", X=img.addr, XS=img.stride, Y=patches.addr, YS=patches.stride, P0=3, P1=224, P2=16)
    _single(p)

    p = Program()
    x = p.tensor("x", rng.integers(-100, 100, size=(197, 200)))
    w = p.tensor("w", rng.integers(-100, 100, size=(130, 200)))
    b = p.tensor("b", rng.integers(-100, 100, size=(1, 130)))
    y = p.tensor("y", rows=197, cols=130)
    p.op("LINEAR", ("BIAS",), X=x.addr, XS=x.stride, W=w.addr, WS=w.stride, B=b.addr, Y=y.addr, YS=y.stride,
         M=197, N=130, K=200, SH0=0, SH1=8)  # fmt: skip
    _single(p)

    p = Program()
    x = p.tensor("x", rng.integers(-100, 100, size=(50, 72)))
    g = p.tensor("g", rng.integers(-100, 100, size=(1, 72)))
    be = p.tensor("be", rng.integers(-100, 100, size=(1, 72)))
    y = p.tensor("y", rows=50, cols=72)
    n_cache = p.tensor("n", rows=50, cols=72, dtype=np.int32)
    rs = p.tensor("rs", rows=50, cols=2, dtype=np.int32)
    p.op("LAYERNORM", ("CACHE",), X=x.addr, XS=x.stride, W=g.addr, B=be.addr, Y=y.addr, YS=y.stride, M=50, K=72,
         SH0=-14, SH1=14, AUX0=n_cache.addr, AS=n_cache.stride, AUX1=rs.addr, E0=1)  # fmt: skip
    _single(p)


def test_attention_with_probs_and_map_sparse():
    rng = np.random.default_rng(3)
    M, C, H, n_conn = 23, 32, 2, 5
    p = Program()
    qkv = p.tensor("qkv", rng.integers(-200, 200, size=(M, 3 * C)))
    ctx = p.tensor("ctx", rows=M, cols=C)
    lists = np.sort(np.stack([rng.choice(M - 1, n_conn, replace=False) for _ in range(M - 1)]), axis=1)
    conn = p.tensor("conn", lists, dtype=np.int32)
    smap = p.tensor("map", rows=M, cols=M, dtype=np.int32)
    probs = p.tensor("probs", rows=H * M, cols=M)
    p.op("ATTENTION", ("SPARSE", "MAP", "PROBS"), X=qkv.addr, XS=qkv.stride, Y=ctx.addr, YS=ctx.stride, M=M, N=C,
         P0=H, P1=1, P2=n_conn, AUX0=conn.addr, AS=conn.stride, AUX1=smap.addr, AUX2=probs.addr,
         SH0=0, SH1=8)  # fmt: skip
    _single(p)


def test_linear_backward_at_deit_size_tiles():
    """197 tokens (7 row tiles), K 200 (4 column tiles), N 130 (5 dW row tiles), with bias."""
    rng = np.random.default_rng(4)
    M, N, K = 197, 130, 200
    for op in ("LINEAR_BWD_DX", "LINEAR_BWD_DW"):
        p = Program(with_luts=False)
        fmt = format_table(p, {0: 10})
        dy = p.tensor("dy", grad(rng, (M, N), 9))
        if op == "LINEAR_BWD_DX":
            w, y = p.tensor("w", grad(rng, (N, K), 9)), p.tensor("dx", rows=M, cols=K)
            p.op(op, X=dy.addr, XS=dy.stride, W=w.addr, WS=w.stride, Y=y.addr, YS=y.stride, AUX3=fmt.addr,
                 M=M, N=N, K=K, SH0=12, P3=slots(0, 1))  # fmt: skip
        else:
            x, y, b = (
                p.tensor("x", grad(rng, (M, K), 9)),
                p.tensor("dw", rows=N, cols=K),
                p.tensor("db", rows=1, cols=N),
            )
            p.op(op, ("BIAS",), X=dy.addr, XS=dy.stride, W=x.addr, WS=x.stride, Y=y.addr, YS=y.stride, B=b.addr,
                 AUX3=fmt.addr, M=M, N=N, K=K, SH0=12, P3=slots(0, 1, 2))  # fmt: skip
        _single(p)


def test_sparse_attention_backward():
    rng = np.random.default_rng(5)
    M, C, H = 50, 64, 4
    qkv, conn, probs = attention_case(rng, M, C, H, attn_keep=0.3)
    p, r = run_attn(grad(rng, (M, C), 11), 12, qkv, 12, H, probs, conn)
    assert r.ok, r.status_name
    _run_op_by_op(p.arena.buf, p.arena.tensors["program"].addr + (len(p.descs) - 1) * abi()["abi"]["DESC_BYTES"],
                  1, ["ATTENTION_BWD"])  # fmt: skip


def test_the_model_refuses_an_unknown_loop_and_opcode():
    c = cm.OpCost("LINEAR")
    with pytest.raises(KeyError):
        c.add("NO_SUCH_LOOP", 1)
    words = np.zeros(abi()["abi"]["DESC_WORDS"], np.uint32)
    words[0] = 250
    with pytest.raises(ValueError, match="opcode 250"):
        cm.op_cost(words)


def test_every_counted_loop_of_the_headers_is_in_the_model():
    """Each counter of counters.h is fed by at least one loop of the model's table (or is reserved)."""
    fed = {lp.counter for lp in cm.LOOPS.values() if lp.counter}
    counters = {k for k in abi()["counters"] if k != "COUNT"}
    missing = counters - fed
    assert not missing, f"counters without a loop in the cycle model: {sorted(missing)}"
