"""The example level: subset invariants, ranking against a plain-Python oracle, ablations,
resume exactness, schedule, bad input and a 2-process gloo DDP run."""

from __future__ import annotations

import io
import json
import math
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from trilevel.example_selector import NEVER_LEARNED, ExampleSelector


def outcomes(n: int, epochs: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Per (epoch, example): correct bool and attention variance on a 1/8 grid (exact in
    float32, many ties) so the oracle's arithmetic is the selector's."""
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(n, generator=g)  # per-example difficulty
    correct = torch.rand(epochs, n, generator=g) < p
    var = torch.randint(0, 6, (epochs, n), generator=g).float() / 8
    return correct, var


def run_epoch(sel: ExampleSelector, epoch: int, correct: torch.Tensor, var: torch.Tensor, batch: int = 16):
    """Feed one epoch of the subset to the selector; returns the presented indices in order."""
    order = sel.epoch_indices(epoch)
    for b in order.split(batch):
        sel.record(b, correct[epoch, b], var[epoch, b])
    return order


def active_set(sel: ExampleSelector) -> set[int]:
    return set(sel.active.nonzero().squeeze(1).tolist())


class Oracle:
    """Forgetting statistics the slow, obvious way: one Python loop over presentations."""

    def __init__(self):
        self.prev, self.forget, self.learned, self.seen, self.var_sum = {}, {}, set(), {}, {}

    def present(self, i: int, ok: bool, v: float) -> None:
        if self.prev.get(i) is True and not ok:
            self.forget[i] = self.forget.get(i, 0) + 1
        self.prev[i] = ok
        if ok:
            self.learned.add(i)
        self.seen[i] = self.seen.get(i, 0) + 1
        self.var_sum[i] = self.var_sum.get(i, 0.0) + v

    def key(self, i: int) -> tuple:
        count = self.forget.get(i, 0) if i in self.learned else math.inf
        return (count, self.var_sum.get(i, 0.0) / max(self.seen.get(i, 0), 1), i)

    def ranking(self, members) -> list[int]:
        return sorted(members, key=self.key)


def test_subset_size_constant_and_partition():
    n, keep = 300, 0.7
    sel = ExampleSelector(n, keep, [1, 2, 3, 4], remove_fraction=0.1, seed=5)
    correct, var = outcomes(n, 6)
    k = 210
    assert sel.subset_size == k and int(sel.active.sum()) == k
    for epoch in range(4):
        before, pool_before = active_set(sel), set(sel.state_dict()["pool"].tolist())
        order = run_epoch(sel, epoch, correct, var)
        assert sorted(order.tolist()) == sorted(before)  # one full pass over the subset
        summary = sel.end_epoch(epoch)
        after, pool = active_set(sel), sel.state_dict()["pool"].tolist()
        assert len(after) == k and summary["subset"] == k
        assert after.isdisjoint(pool) and after | set(pool) == set(range(n)) and len(pool) == n - k
        removed, restored = before - after, after - before
        assert len(removed) == len(restored) == summary["removed"] == summary["restored"] == 30
        assert restored <= pool_before  # restores come from the old pool only
        assert summary["hash"] == sel.subset_hash()


def test_ranking_matches_plain_python():
    n = 200
    sel = ExampleSelector(n, 0.6, [3], remove_fraction=0.2, seed=2)
    correct, var = outcomes(n, 3, seed=7)
    oracle = Oracle()
    for epoch in range(3):
        for i in run_epoch(sel, epoch, correct, var).tolist():
            oracle.present(i, bool(correct[epoch, i]), float(var[epoch, i]))
    members = sorted(active_set(sel))
    expected = oracle.ranking(members)
    assert sel.ranking().tolist() == expected
    counts = [oracle.key(i)[0] for i in members]
    assert len(set(counts)) > 2 and math.inf in counts  # the keys really vary
    st = sel.statistics()
    assert st["forget"][members].tolist() == [oracle.forget.get(i, 0) for i in members]
    before = set(members)
    sel.end_epoch(2)
    assert before - active_set(sel) == set(expected[:40])


def test_forgetting_events_and_never_learned():
    sel = ExampleSelector(6, 1.0, [1])
    seqs = {0: "TFTFFT", 1: "FFF", 2: "FTT", 3: "TTTF", 5: "TFFT"}  # 4 is never presented
    for t in range(6):
        idx = [i for i, s in seqs.items() if t < len(s)]
        ok = [seqs[i][t] == "T" for i in idx]
        sel.record(torch.tensor(idx), torch.tensor(ok), torch.full((len(idx),), 0.5))
    st = sel.statistics()
    assert st["forget"].tolist() == [2, 0, 0, 1, 0, 1]
    assert st["learned"].tolist() == [True, False, True, True, False, True]
    assert st["seen"].tolist() == [6, 3, 3, 4, 0, 4]
    assert st["rank_count"][[1, 4]].tolist() == [NEVER_LEARNED] * 2
    # An index twice in one step is one presentation: its first copy (T) counts.
    sel.record(torch.tensor([2, 2]), torch.tensor([True, False]), torch.tensor([1.0, 3.0]))
    assert (st["forget"][2], st["seen"][2], st["mean_var"][2]) == (0, 4, 2.0 / 4)
    assert sel.end_epoch(0)["removed"] == 0  # keep 1.0: a no-op update that still resets
    assert int(sel.active.sum()) == 6 and sel.subset_hash() == _hash_of(range(6))
    st = sel.statistics()
    assert st["seen"].sum() == 0 and st["forget_total"].tolist() == [2, 0, 0, 1, 0, 1]
    # After the reset a wrong answer is not a forgetting event: the last result was cleared.
    sel.record(torch.tensor([0]), torch.tensor([False]), torch.tensor([0.0]))
    assert st["forget"][0] == 0


def _hash_of(indices) -> str:
    from trilevel.example_selector import _short_hash

    return _short_hash(torch.tensor(sorted(indices), dtype=torch.int64))


def test_never_learned_examples_stay():
    n = 40
    sel = ExampleSelector(n, 0.5, [1], remove_fraction=0.25, seed=0)
    members = sorted(active_set(sel))
    hard = members[:10]  # never right, and the lowest variance: still ranked last
    ok = torch.tensor([i not in hard for i in members])
    var = torch.tensor([0.0 if i in hard else 1.0 + i for i in members])
    sel.record(torch.tensor(members), ok, var)
    sel.end_epoch(0)
    after = active_set(sel)
    assert set(hard) <= after
    assert set(members) - after == set(sorted(set(members) - set(hard))[:10])  # lowest variance out


def test_random_method_ignores_statistics():
    n = 100
    a = ExampleSelector(n, 0.8, [1, 2], remove_fraction=0.1, method="random", seed=4)
    b = ExampleSelector(n, 0.8, [1, 2], remove_fraction=0.1, method="random", seed=4)
    c = ExampleSelector(n, 0.8, [1, 2], remove_fraction=0.1, method="random", seed=9)
    assert not a.needs_stats
    ca, va = outcomes(n, 2, seed=1)
    cb, vb = outcomes(n, 2, seed=2)
    for epoch in range(2):
        before = active_set(a)
        run_epoch(a, epoch, ca, va)
        run_epoch(b, epoch, cb, vb)
        assert a.end_epoch(epoch)["removed"] == 10 and b.end_epoch(epoch)["restored"] == 10
        c.end_epoch(epoch)
        assert len(before - active_set(a)) == 10 and int(a.active.sum()) == 80
    assert a.subset_hash() == b.subset_hash() != c.subset_hash()
    # Not the trilevel ranking: the ranking's choice differs on these statistics.
    t = ExampleSelector(n, 0.8, [1, 2], remove_fraction=0.1, method="trilevel", seed=4)
    for epoch in range(2):
        run_epoch(t, epoch, ca, va)
        t.end_epoch(epoch)
    assert t.subset_hash() != a.subset_hash()


def test_forgetting_two_phase():
    n = 60
    sel = ExampleSelector(n, 0.5, [2, 3], method="forgetting", seed=1)
    assert sel.num_active == int(sel.active.sum()) == n and len(sel.epoch_indices(0)) == n and sel.needs_stats
    correct, var = outcomes(n, 4, seed=3)
    oracle = Oracle()
    for epoch in range(2):
        for i in run_epoch(sel, epoch, correct, var).tolist():
            oracle.present(i, bool(correct[epoch, i]), float(var[epoch, i]))
        assert (sel.end_epoch(epoch) is None) == (epoch == 0)
    kept = active_set(sel)
    assert (
        kept == set(oracle.ranking(range(n))[30:]) and sel.num_active == 30
    )  # most forgotten (ties: variance)
    assert not sel.needs_stats
    run_epoch(sel, 2, correct, var)
    assert sel.end_epoch(2) is None and active_set(sel) == kept  # fixed afterwards


def test_state_dict_resume_is_exact():
    n = 150
    make = lambda: ExampleSelector(n, 0.7, [1, 2, 3, 4], remove_fraction=0.1, seed=11)
    correct, var = outcomes(n, 6, seed=5)
    a = make()
    for epoch in range(2):
        run_epoch(a, epoch, correct, var)
        a.end_epoch(epoch)
    run_epoch(a, 2, correct, var)  # save mid-statistics, before the epoch-3 update
    saved = (a.subset_hash(), a.stats_hash())
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    state = torch.load(io.BytesIO(buf.getvalue()), weights_only=True)
    assert all(v.device.type == "cpu" for v in state.values() if isinstance(v, torch.Tensor))
    b = make()
    assert b.subset_hash() != a.subset_hash()
    b.load_state_dict(state)
    assert (b.subset_hash(), b.stats_hash()) == (a.subset_hash(), a.stats_hash())
    for epoch in range(2, 6):
        if epoch > 2:
            assert torch.equal(a.epoch_indices(epoch), b.epoch_indices(epoch))
            run_epoch(a, epoch, correct, var)
            run_epoch(b, epoch, correct, var)
        assert a.end_epoch(epoch) == b.end_epoch(epoch)
        assert (b.subset_hash(), b.stats_hash()) == (a.subset_hash(), a.stats_hash())
        assert torch.equal(a.state_dict()["pool"], b.state_dict()["pool"])
    assert a.end_epoch(2) is None  # an update is never applied twice
    with pytest.raises(ValueError, match="num_examples"):
        ExampleSelector(n + 1, 0.7, [1]).load_state_dict(state)
    with pytest.raises(ValueError, match="method"):
        ExampleSelector(n, 0.7, [1], 0.1, method="random", seed=11).load_state_dict(state)
    rebuilt = ExampleSelector.from_state_dict(state)
    assert (rebuilt.subset_hash(), rebuilt.stats_hash()) == saved


def test_schedule():
    s = ExampleSelector.schedule
    assert s(300, 0.8) == [30, 60, 90, 120, 150] and s(300, 0.7) == [30, 60, 90, 120, 150]
    assert s(300, 0.9) == [30, 60, 90]
    assert s(30, 0.8) == [3, 6, 9, 12, 15] and s(100, 0.9) == [10, 20, 30]
    assert s(10, 0.8) == [1, 2, 3, 4, 5]
    assert s(4, 0.8) == [1, 2, 3]  # default count trimmed to fit; colliding epochs bumped
    assert s(300, 1.0) == []
    assert s(50, 0.8, updates=2, first=10, every=15) == [10, 25]
    with pytest.raises(ValueError, match="past the last epoch"):
        s(10, 0.8, updates=5, first=6)
    with pytest.raises(ValueError, match="past the last epoch"):
        s(20, 0.8, every=5)
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"\(0, 1\]"):
            s(10, bad)


def test_bad_input():
    for bad in (0.0, 1.01, -1.0):
        with pytest.raises(ValueError, match=r"keep ratio must be in \(0, 1\]"):
            ExampleSelector(100, bad, [1])
    with pytest.raises(ValueError, match="past the last epoch"):
        ExampleSelector(100, 0.8, [3, 10], epochs=10)
    with pytest.raises(ValueError, match="increasing and >= 1"):
        ExampleSelector(100, 0.8, [3, 3])
    with pytest.raises(ValueError, match="unknown example method"):
        ExampleSelector(100, 0.8, [3], method="loss")
    sel = ExampleSelector(100, 0.3, [3])
    sel.check_batch(15, 2)
    with pytest.raises(ValueError, match="fewer than one global batch of 32"):
        sel.check_batch(16, 2)
    with pytest.raises(ValueError, match="fewer than one global batch"):  # two-phase: the final size counts
        ExampleSelector(100, 0.3, [3], method="forgetting").check_batch(31)


# ---------------------------------------------------------------- DDP (gloo, 2 processes)

DDP_N, DDP_EPOCHS, DDP_BATCH = 64, 3, 4  # per-rank batch


def _ddp_run(rank: int | None, world: int, port: int | None, out: str | None):
    """rank None: one process recording the global batches (the reference)."""
    if rank is not None:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    sel = ExampleSelector(DDP_N, 0.75, [1, 2], remove_fraction=0.1, seed=3)
    correct, var = outcomes(DDP_N, DDP_EPOCHS, seed=8)
    hashes, mine = [], []
    for epoch in range(DDP_EPOCHS):
        for b in sel.epoch_indices(epoch).split(DDP_BATCH * world):
            part = b if rank is None else b[rank * DDP_BATCH : (rank + 1) * DDP_BATCH]
            mine += part.tolist()
            sel.record(part, correct[epoch, part], var[epoch, part])
        hashes.append((sel.stats_hash(), sel.end_epoch(epoch)["hash"] if epoch < 2 else sel.subset_hash()))
    result = {"hashes": hashes, "final": [sel.subset_hash(), sel.stats_hash()], "mine": mine}
    if rank is None:
        return result
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_ranks_agree(tmp_path):
    mp.spawn(_ddp_run, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    per_epoch = len(r0["mine"]) // DDP_EPOCHS
    assert set(r0["mine"][:per_epoch]).isdisjoint(r1["mine"][:per_epoch])  # different samples
    ref = _ddp_run(None, 2, None, None)
    assert r0["hashes"] == r1["hashes"] == [list(h) for h in ref["hashes"]]
    assert r0["final"] == r1["final"] == ref["final"]
    single = ExampleSelector(DDP_N, 0.75, [1, 2], remove_fraction=0.1, seed=3)
    assert r0["final"][1] != single.stats_hash()  # statistics were recorded at all


@pytest.mark.gpu
def test_record_does_not_sync_on_cuda():
    sel = ExampleSelector(1000, 0.8, [1], device="cuda")
    idx = sel.epoch_indices(0)[:256].cuda()
    ok, var = torch.rand(256, device="cuda") < 0.5, torch.rand(256, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            sel.record(idx, ok, var)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    cpu = ExampleSelector(1000, 0.8, [1])
    for _ in range(3):
        cpu.record(idx.cpu(), ok.cpu(), var.cpu())
    assert sel.stats_hash() == cpu.stats_hash()
    assert sel.end_epoch(0) == cpu.end_epoch(0)
