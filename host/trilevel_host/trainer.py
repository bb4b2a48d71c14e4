"""Per-sample training through the engine: one start runs forward, backward and update.

:class:`EngineTrainer` is an :class:`~.runner.EngineRunner` on a :class:`~.engine.train_program.
TrainProgram`: it loads the package once, then each :meth:`~EngineTrainer.train_step` writes one
quantised image and its label, starts the ``train`` list and waits. The weights and their int32
master copies stay in the device between samples; gradients, their run-time formats and the
updated weights are read back by name.
"""

from __future__ import annotations

import numpy as np

from .device.base import Device
from .engine.train_program import TrainProgram, build_train_program
from .package import Package
from .runner import DEFAULT_TIMEOUT, EngineRunner, InputError


class EngineTrainer(EngineRunner):
    """A package loaded into a device for training (SGD at the program's learning rate)."""

    program: TrainProgram

    @classmethod
    def from_package(
        cls, pkg: Package, device: Device, timeout: float = DEFAULT_TIMEOUT, lr: float = 0.01
    ) -> EngineTrainer:
        return cls(build_train_program(pkg, lr), device, timeout)

    def train_step(self, image: np.ndarray, label: int) -> float:
        """One SGD step on one sample; image (Cin, H, W) ints at the ``input`` format. Returns the wall time."""
        cfg = self.program.cfg
        image = np.asarray(image)
        if image.shape != (cfg.in_chans, cfg.img_size, cfg.img_size):
            raise InputError(
                f"image of shape {image.shape}: the model takes {(cfg.in_chans, cfg.img_size, cfg.img_size)}"
            )
        if not 0 <= int(label) < cfg.num_classes:
            raise InputError(f"label {label}: the model has {cfg.num_classes} classes")
        self.write("input", image.reshape(cfg.in_chans * cfg.img_size, cfg.img_size))
        self.write("label", np.array([[int(label)]]))
        return self.run("train")

    def gradient(self, key: str) -> tuple[np.ndarray, int]:
        """(values in the engine's 2-D layout, frac_bits) of a weight's gradient, or of ``loss.dlogits``."""
        g = self.program.grads[key]
        return self.read("grad." + key), int(self.read("grad.formats")[0, g.slot])

    def weight(self, key: str) -> np.ndarray:
        return self.read(key)

    def master(self, key: str) -> np.ndarray:
        return self.read("master." + key)
