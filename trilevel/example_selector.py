"""The example level: online example filtering on a fixed-size subset of the training set.

The model trains on a subset of ``keep_ratio * N`` examples, drawn at random at first. Every
training step reports, per sample, whether the prediction was right and a scale-free
attention-variance statistic (:func:`trilevel.selection.attention_variance`). From these the
selector keeps, per example and since the last update:

- forgetting events: right at one presentation, wrong at the next;
- whether it was ever right (never-learned examples rank as if forgotten the most);
- the mean of the attention variance.

At scheduled epochs the ``n`` least informative members of the subset (ascending by
(forgetting count, mean variance), one global ranking across classes) leave it, and the
same number return at random from the shuffled pool of removed examples; the statistics
then reset. Two ablations: ``"random"`` swaps ``n`` random members for ``n`` pool examples,
and ``"forgetting"`` trains on the full data until the first update epoch, then keeps the
``keep_ratio * N`` most forgotten examples for the rest of the run.

Everything here is deterministic given the seed: every random draw comes from a CPU
generator seeded by (seed, purpose, epoch), so all DDP ranks hold the same subset, and a
resumed run draws what the uninterrupted run would have drawn.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist

from .selection import keep_count

METHODS = ("trilevel", "random", "forgetting")
STATE_VERSION = 1
# Rank key of an example never right since the last reset: above any real forgetting count.
NEVER_LEARNED = torch.iinfo(torch.int32).max
# Purposes that separate the random streams drawn from one seed.
_INIT, _EPOCH, _UPDATE = 0, 1, 2
# Columns of the packed int32 counters and bits of the packed flags (see _reset_stats).
_FORGET, _FORGET_TOTAL, _SEEN = 0, 1, 2
_RIGHT_LAST, _LEARNED = 1, 2


def _generator(*key: int) -> torch.Generator:
    """A CPU generator seeded by a tuple of ints: the same stream on every rank and device."""
    state = np.random.SeedSequence([int(k) % 2**64 for k in key]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def _short_hash(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


class ExampleSelector:
    """Chooses the training subset and updates it from per-sample statistics.

    num_examples: N, the size of the training set (indices 0..N-1).
    keep_ratio: r_e in (0, 1]; the subset holds ceil(r_e * N) examples.
    update_epochs: epochs (0-based, >= 1) before which the subset is updated; see :meth:`schedule`.
    remove_fraction: fraction of the whole dataset swapped out per update (paper: 0.05).
    method: "trilevel" | "random" | "forgetting" (two-phase ablation: only the first update
        epoch is used; before it the subset is the whole dataset).
    epochs: length of the run; when given, update epochs at or past it are an error.
    """

    def __init__(
        self,
        num_examples: int,
        keep_ratio: float,
        update_epochs: Sequence[int],
        remove_fraction: float = 0.05,
        method: str = "trilevel",
        seed: int = 0,
        device: torch.device | str = "cpu",
        epochs: int | None = None,
    ):
        if int(num_examples) < 1:
            raise ValueError(f"the example selector needs at least one example, got {num_examples}")
        if not (isinstance(keep_ratio, (int, float)) and 0.0 < keep_ratio <= 1.0):
            raise ValueError(f"example keep ratio must be in (0, 1], got {keep_ratio}")
        if not 0.0 <= remove_fraction <= 1.0:
            raise ValueError(f"example remove fraction must be in [0, 1], got {remove_fraction}")
        if method not in METHODS:
            raise ValueError(f"unknown example method {method!r}; choose from {', '.join(METHODS)}")
        update_epochs = [int(e) for e in update_epochs]
        if any(e < 1 for e in update_epochs) or any(
            b <= a for a, b in zip(update_epochs[:-1], update_epochs[1:], strict=True)
        ):
            raise ValueError(f"example update epochs must be increasing and >= 1, got {update_epochs}")
        if epochs is not None and update_epochs and update_epochs[-1] >= epochs:
            raise ValueError(
                f"example update at epoch {update_epochs[-1]} is past the last epoch ({epochs - 1}) "
                f"of a {epochs}-epoch run"
            )
        self.num_examples = N = int(num_examples)
        self.keep_ratio = float(keep_ratio)
        self.update_epochs = update_epochs
        self.remove_fraction = float(remove_fraction)
        self.method = method
        self.seed = int(seed)
        self.device = torch.device(device)
        self.subset_size = K = keep_count(N, self.keep_ratio)
        # Examples swapped per update: a fraction of the whole dataset (as in the paper),
        # never more than the subset or the pool can give.
        self.num_swap = min(math.ceil(round(self.remove_fraction * N, 6)), K, N - K)
        self.applied: list[int] = []  # update epochs already carried out

        perm = torch.randperm(N, generator=_generator(self.seed, _INIT))
        first = perm if method == "forgetting" else perm[:K]
        self._active = torch.zeros(N, dtype=torch.bool, device=self.device)
        self._active[first.to(self.device)] = True
        # Removed examples in shuffled order; restores take from the front.
        self._pool = perm[K:].to(self.device) if method != "forgetting" else perm[:0].to(self.device)
        self._refresh_active_cpu()
        # Per-example statistics carry one spare slot at index N: record() sends the writes
        # of repeated indices there, so every real slot gets exactly one write per step and
        # the scatters stay deterministic. They are packed into three buffers so that a step
        # costs three scatters (kernel launches, not bandwidth, are the cost at this size).
        self._counts = torch.zeros(N + 1, 3, dtype=torch.int32, device=self.device)  # forget, total, seen
        self._flags = torch.zeros(N + 1, dtype=torch.uint8, device=self.device)  # right last time, learned
        self._var_sum = torch.zeros(N + 1, dtype=torch.float64, device=self.device)  # attention variance

    # ------------------------------------------------------------------ sampling

    @property
    def active(self) -> torch.Tensor:
        """bool (N,) on ``device``: membership of the current subset."""
        return self._active

    @property
    def num_active(self) -> int:
        """Size of the current subset (the whole dataset in the two-phase method's first phase)."""
        return len(self._active_cpu)

    @property
    def needs_stats(self) -> bool:
        """Whether a later update still reads the statistics (the loop may skip record())."""
        if self.method == "random":
            return False
        if self.method == "forgetting":
            return not self.applied and bool(self.update_epochs) and self.subset_size < self.num_examples
        return self.num_swap > 0 and any(e not in self.applied for e in self.update_epochs)

    def epoch_indices(self, epoch: int) -> torch.Tensor:
        """int64 (n_active,) on the CPU: the subset in a random order seeded by (seed, epoch).

        Identical on every DDP rank; each rank takes its own share of it.
        """
        order = torch.randperm(len(self._active_cpu), generator=_generator(self.seed, _EPOCH, epoch))
        return self._active_cpu[order]

    def check_batch(self, batch_size: int, world_size: int = 1) -> None:
        """Raise ValueError if the subset (now or after the first update) is below one global batch."""
        smallest = min(len(self._active_cpu), self.subset_size)
        global_batch = batch_size * world_size
        if smallest < global_batch:
            raise ValueError(
                f"the example subset holds {smallest} examples (keep ratio {self.keep_ratio} of "
                f"{self.num_examples}), fewer than one global batch of {global_batch} "
                f"({batch_size} x {world_size} ranks); lower the batch size or raise the example keep ratio"
            )

    # ------------------------------------------------------------------ statistics

    def record(self, indices: torch.Tensor, correct: torch.Tensor, attn_var: torch.Tensor) -> None:
        """Add one training step's per-sample results; vectorised, no host sync.

        indices: int64 (B,) dataset indices; correct: bool (B,); attn_var: float (B,), all on
        ``device``. Under mixup/cutmix ``correct`` is argmax(logits) == argmax(soft target),
        i.e. the prediction against the dominant label of the mixed image, not the unmixed
        label (which the paper's code used). Under torch.distributed every rank's three
        tensors are all-gathered first (one collective; equal B on every rank), so all ranks
        apply the same updates. An index repeated within one (global) step counts as one
        presentation: its first copy in rank order.
        """
        packed = torch.stack(  # (3, B); float64 holds indices exactly up to 2**53
            [indices.to(torch.float64), correct.to(torch.float64), attn_var.detach().to(torch.float64)]
        )
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            parts = [torch.empty_like(packed) for _ in range(dist.get_world_size())]
            dist.all_gather(parts, packed)
            packed = torch.cat(parts, dim=1)  # (3, world * B) in rank order, the same on all ranks
        packed = packed.index_select(1, packed[0].argsort(stable=True))  # sorted by index
        idx, ok, var = packed[0].long(), packed[1].to(torch.uint8), packed[2]  # (B',) each
        first = torch.ones_like(ok, dtype=torch.bool)
        first[1:] = idx[1:] != idx[:-1]
        slot = torch.where(first, idx, self.num_examples)  # repeats go to the spare slot
        flags = self._flags.gather(0, slot)
        forgot = (flags & _RIGHT_LAST) > ok  # right last time, wrong now
        counts = torch.stack([forgot, forgot, first], dim=1).int()  # (B', 3) in _counts' columns
        self._counts.scatter_add_(0, slot.unsqueeze(1).expand(-1, 3), counts)
        self._var_sum.scatter_add_(0, slot, var)
        self._flags.scatter_(0, slot, ok * (_RIGHT_LAST | _LEARNED) | (flags & _LEARNED))

    def _reset_stats(self) -> None:
        """Clear everything but the whole-run forgetting count."""
        self._counts[:, _FORGET] = 0
        self._counts[:, _SEEN] = 0
        self._flags.zero_()
        self._var_sum.zero_()

    def statistics(self) -> dict[str, torch.Tensor]:
        """Views (N,) on ``device``: forget, learned, seen, mean_var (since the last update),
        forget_total (whole run), and rank_count (forget, or NEVER_LEARNED if never right)."""
        n = self.num_examples
        forget, seen = self._counts[:n, _FORGET], self._counts[:n, _SEEN]
        learned = (self._flags[:n] & _LEARNED) > 0
        return {
            "forget": forget,
            "learned": learned,
            "seen": seen,
            "mean_var": self._var_sum[:n] / seen.clamp_min(1),
            "forget_total": self._counts[:n, _FORGET_TOTAL],
            "rank_count": torch.where(learned, forget, NEVER_LEARNED),
        }

    def ranking(self, candidates: torch.Tensor | None = None) -> torch.Tensor:
        """Candidates (default: the subset, ascending) from least to most informative.

        int64 (n,) on ``device``: ascending by (forgetting count, mean variance), never-learned
        examples last; equal keys keep ascending index order (both sorts are stable).
        """
        if candidates is None:
            candidates = self._active.nonzero().squeeze(1)
        st = self.statistics()
        order = st["mean_var"][candidates].argsort(stable=True)
        order = order[st["rank_count"][candidates][order].argsort(stable=True)]
        return candidates[order]

    # ------------------------------------------------------------------ updates

    def end_epoch(self, epoch: int) -> dict | None:
        """Call after epoch ``epoch`` (0-based); updates the subset if epoch + 1 is scheduled.

        Returns a summary dict of the update, or None if nothing happened.
        """
        nxt = epoch + 1
        if nxt not in self.update_epochs or nxt in self.applied:
            return None
        if self.method == "forgetting" and self.applied:
            return None  # the two-phase subset stays fixed after its one update
        st = self.statistics()
        seen = self._active & (st["seen"] > 0)
        summary = {
            "epoch": nxt,
            "method": self.method,
            "mean_forgetting": float(st["forget"][seen].float().mean()) if bool(seen.any()) else 0.0,
            "never_learned": int((self._active & ~st["learned"]).sum()),
        }
        removed, restored = self._update(nxt)
        self.applied.append(nxt)
        self._reset_stats()
        summary.update(
            removed=len(removed),
            restored=len(restored),
            subset=len(self._active_cpu),
            hash=self.subset_hash(),
        )
        return summary

    def _update(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Swap examples between the subset and the pool; returns (removed, restored) indices."""
        g = _generator(self.seed, _UPDATE, epoch)
        members = self._active.nonzero().squeeze(1)  # ascending; one host sync per update is fine
        if self.method == "random":
            order = members[torch.randperm(len(members), generator=g).to(self.device)]
        else:
            order = self.ranking(members)
        n_out = len(members) - self.subset_size if self.method == "forgetting" else self.num_swap
        n_in = 0 if self.method == "forgetting" else n_out
        removed, restored = order[:n_out], self._pool[:n_in]
        self._active[removed] = False
        self._active[restored] = True
        # Restores come from the pool as it stood before this update, so an example just
        # removed cannot come straight back; then the whole pool is reshuffled.
        pool = torch.cat([self._pool[n_in:], removed])
        self._pool = pool[torch.randperm(len(pool), generator=g).to(self.device)]
        self._refresh_active_cpu()
        return removed, restored

    def _refresh_active_cpu(self) -> None:
        self._active_cpu = self._active.nonzero().squeeze(1).cpu()  # int64 (n_active,) ascending

    # ------------------------------------------------------------------ logging and resume

    def subset_hash(self) -> str:
        """Short sha256 of the active index set (log it to check that ranks agree)."""
        return _short_hash(self._active_cpu)

    def stats_hash(self) -> str:
        """Short sha256 of the statistics (the spare slot excluded)."""
        n = self.num_examples
        return _short_hash(self._counts[:n], self._flags[:n], self._var_sum[:n])

    def state_dict(self) -> dict:
        """Everything needed to resume exactly; tensors on the CPU.

        The random streams are derived from (seed, purpose, epoch), so the seed is the RNG state.
        """
        n = self.num_examples
        return {
            "version": STATE_VERSION,
            "num_examples": n,
            "keep_ratio": self.keep_ratio,
            "remove_fraction": self.remove_fraction,
            "method": self.method,
            "seed": self.seed,
            "update_epochs": list(self.update_epochs),
            "applied": list(self.applied),
            "active": self._active.cpu().clone(),
            "pool": self._pool.cpu().clone(),
            "counts": self._counts[:n].cpu().clone(),  # int32 (N, 3): forget, forget_total, seen
            "flags": self._flags[:n].cpu().clone(),  # uint8 (N,): bit 0 right last time, bit 1 learned
            "var_sum": self._var_sum[:n].cpu().clone(),  # float64 (N,)
        }

    def load_state_dict(self, d: dict) -> None:
        """Restore a state from :meth:`state_dict`; the run's settings must match."""
        if d.get("version") != STATE_VERSION:
            raise ValueError(
                f"example selector state of version {d.get('version')}, expected {STATE_VERSION}"
            )
        for key in ("num_examples", "keep_ratio", "remove_fraction", "method", "seed"):
            if d[key] != getattr(self, key):
                raise ValueError(
                    f"example selector state has {key}={d[key]!r} but this run has {getattr(self, key)!r}"
                )
        dev, n = self.device, self.num_examples
        self.applied = [int(e) for e in d["applied"]]
        self._active = d["active"].to(dev, torch.bool).clone()
        self._pool = d["pool"].to(dev, torch.int64).clone()
        self._counts[:n] = d["counts"].to(dev, torch.int32)
        self._flags[:n] = d["flags"].to(dev, torch.uint8)
        self._var_sum[:n] = d["var_sum"].to(dev, torch.float64)
        self._refresh_active_cpu()

    @classmethod
    def from_state_dict(cls, d: dict, device: torch.device | str = "cpu") -> ExampleSelector:
        """A selector rebuilt from a saved state alone (for analysis, e.g. ``trilevel viz``)."""
        sel = cls(
            d["num_examples"],
            d["keep_ratio"],
            d["update_epochs"],
            d["remove_fraction"],
            d["method"],
            d["seed"],
            device,
        )
        sel.load_state_dict(d)
        return sel

    # ------------------------------------------------------------------ schedule

    @staticmethod
    def schedule(
        epochs: int,
        keep_ratio: float,
        updates: int | None = None,
        first: float | None = None,
        every: float | None = None,
    ) -> list[int]:
        """Update epochs for a run of ``epochs``: the paper's 30, 60, ... of 300 scaled.

        updates: default 5 for keep <= 0.8, 3 above it, none at keep 1.0; first and every
        default to 30/300 of the run. Epochs are rounded, at least 1 and strictly increasing
        (a short run bumps colliding epochs up by one). With the default count, updates that
        do not fit before the last epoch are dropped; an explicit ``updates``, ``first`` or
        ``every`` that does not fit raises ValueError.
        """
        if not 0.0 < keep_ratio <= 1.0:
            raise ValueError(f"example keep ratio must be in (0, 1], got {keep_ratio}")
        if epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {epochs}")
        explicit = updates is not None or first is not None or every is not None
        if updates is None:
            updates = 0 if keep_ratio >= 1.0 else (5 if keep_ratio <= 0.8 + 1e-9 else 3)
        if updates < 0:
            raise ValueError(f"the number of example updates must be >= 0, got {updates}")
        every = 30 / 300 * epochs if every is None else every
        first = every if first is None else first
        if every <= 0 or first < 0:
            raise ValueError(
                f"example updates need first >= 0 and every > 0, got first={first}, every={every}"
            )
        out: list[int] = []
        for k in range(updates):
            e = max(1, math.floor(round(first + k * every, 6) + 0.5))
            out.append(max(e, out[-1] + 1) if out else e)
        late = [e for e in out if e >= epochs]
        if late and explicit:
            raise ValueError(
                f"example update at epoch {late[0]} is past the last epoch ({epochs - 1}) of a "
                f"{epochs}-epoch run (updates={updates}, first={first}, every={every}); "
                f"use fewer updates or a shorter interval"
            )
        return [e for e in out if e < epochs]
