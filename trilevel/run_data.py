"""A run's batches: the epoch order, this rank's share of it, and the test set split over ranks.

In-memory datasets go through :class:`DeviceLoader` (augmented on the device); ImageFolder
trees through a torch DataLoader with timm's transforms. Training batches carry the
dataset index of every image, which the example selector needs.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from . import distributed as dist_utils
from .data import IndexedDataset, InMemoryDataset
from .device_loader import DeviceLoader


class RunData:
    def __init__(self, train, test, cfg, info: dist_utils.DistInfo, img_size: int, in_chans: int):
        self.cfg, self.info, self.device = cfg, info, info.device
        self.num_train = len(train)
        self.test_size = len(test) if test is not None else 0
        self.in_memory = isinstance(train, InMemoryDataset)
        if self.in_memory:
            dev = self.device if cfg.data_on_device else torch.device("cpu")
            self.train_loader = DeviceLoader(train, cfg.batch_size, img_size, in_chans, dev, train=True)
            self.test_loader = DeviceLoader(test, 512, img_size, in_chans, dev, train=False)
        else:
            self.train_set, self.test_set = IndexedDataset(train), test

    def epoch_indices(self, epoch: int, selector=None) -> torch.Tensor:
        """int64 (n,): this rank's share of the epoch's order (the same order on every rank)."""
        if selector is not None:
            order = selector.epoch_indices(epoch)
        else:
            g = torch.Generator().manual_seed(self.cfg.seed * 1000 + epoch)
            order = torch.randperm(self.num_train, generator=g)
        return dist_utils.shard(order, self.info)

    def steps(self, n_indices: int) -> int:
        """Whole batches in ``n_indices`` examples, capped by --max-steps-per-epoch."""
        steps = n_indices // self.cfg.batch_size
        return min(steps, self.cfg.max_steps_per_epoch or steps)

    def train_batches(self, indices: torch.Tensor) -> Iterator[tuple[torch.Tensor, ...]]:
        """(x (B, C, S, S), y (B,), dataset index (B,)) on the device; whole batches only."""
        if self.in_memory:  # on the device already, unless --no-data-on-device
            for batch in self.train_loader.batches(indices, drop_last=True):
                yield tuple(t.to(self.device, non_blocking=True) for t in batch)
            return
        loader = torch.utils.data.DataLoader(
            self.train_set,
            batch_size=self.cfg.batch_size,
            sampler=indices.tolist(),
            drop_last=True,
            num_workers=self.cfg.workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )
        for x, y, idx in loader:
            yield tuple(t.to(self.device, non_blocking=True) for t in (x, y, idx))

    def test_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's share of the test set: every rank-th image, none dropped, none twice."""
        mine = torch.arange(self.info.rank, self.test_size, self.info.world_size)
        if self.in_memory:
            for x, y, _ in self.test_loader.batches(mine, drop_last=False):
                yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            return
        subset = torch.utils.data.Subset(self.test_set, mine.tolist())
        for x, y in torch.utils.data.DataLoader(subset, batch_size=256, num_workers=self.cfg.workers):
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
