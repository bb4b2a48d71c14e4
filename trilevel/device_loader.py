"""Batches of an in-memory dataset, augmented on the device where the model runs.

Fashion-MNIST fits on a GPU many times over; keeping it there as uint8 and doing the
augmentation with batched tensor ops means no loader worker can starve a fast model.
One ``affine_grid``/``grid_sample`` per batch does random scale, translation, flip and the
resize to the model's input at once.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from .data import InMemoryDataset


class DeviceLoader:
    def __init__(
        self,
        dataset: InMemoryDataset,
        batch_size: int,
        img_size: int,
        in_chans: int,
        device: torch.device,
        train: bool,
        scale: tuple[float, float] = (0.85, 1.15),
        translate: float = 0.1,
        flip: bool = True,
    ):
        self.images = dataset.images.to(device)  # uint8 (N, C0, H0, W0)
        self.labels = dataset.labels.to(device)
        self.batch_size, self.img_size, self.in_chans = batch_size, img_size, in_chans
        self.device, self.train = device, train
        self.scale, self.translate, self.flip = scale, translate, flip
        c0 = self.images.shape[1]
        if in_chans % c0:
            raise ValueError(f"cannot make {in_chans} channels from {c0}")
        self.mean = torch.tensor(dataset.mean, device=device).repeat(in_chans // c0).view(1, -1, 1, 1)
        self.std = torch.tensor(dataset.std, device=device).repeat(in_chans // c0).view(1, -1, 1, 1)

    def batches(self, indices: torch.Tensor, drop_last: bool) -> Iterator[tuple[torch.Tensor, ...]]:
        """Yield (x float (B, C, S, S), y (B,), idx (B,)) over ``indices`` in their order."""
        indices = indices.to(self.device)
        n = len(indices)
        stop = n - n % self.batch_size if drop_last else n
        for start in range(0, stop, self.batch_size):
            idx = indices[start : start + self.batch_size]
            yield self.transform(self.images[idx]), self.labels[idx], idx

    def num_batches(self, n: int, drop_last: bool) -> int:
        return n // self.batch_size if drop_last else -(-n // self.batch_size)

    def transform(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float().div_(255.0)
        if x.shape[1] != self.in_chans:
            x = x.repeat(1, self.in_chans // x.shape[1], 1, 1)
        B = x.shape[0]
        if self.train:
            theta = self._random_affine(B)
            grid = F.affine_grid(theta, (B, self.in_chans, self.img_size, self.img_size), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        elif x.shape[-1] != self.img_size or x.shape[-2] != self.img_size:
            x = F.interpolate(x, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std

    def _random_affine(self, B: int) -> torch.Tensor:
        """(B, 2, 3) sampling matrices: zoom, shift and horizontal flip per sample."""
        dev = self.device
        s = torch.empty(B, device=dev).uniform_(*self.scale).reciprocal()  # grid scale = 1 / zoom
        sx = s * (torch.where(torch.rand(B, device=dev) < 0.5, -1.0, 1.0) if self.flip else 1.0)
        t = torch.empty(B, 2, device=dev).uniform_(-2 * self.translate, 2 * self.translate)
        theta = torch.zeros(B, 2, 3, device=dev)
        theta[:, 0, 0], theta[:, 1, 1] = sx, s
        theta[:, :, 2] = t
        return theta
