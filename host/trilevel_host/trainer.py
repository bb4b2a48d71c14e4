"""Per-sample training through the engine: one start runs forward, backward and update.

:class:`EngineTrainer` is an :class:`~.runner.EngineRunner` on a :class:`~.engine.train_program.
TrainProgram`: it loads the package once, then each :meth:`~EngineTrainer.train_step` writes one
quantised image and its label, starts the ``train`` list and waits. The weights and their int32
master copies stay in the device between samples; gradients, their run-time formats and the
updated weights are read back by name.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .device.base import Device
from .engine.abi import split64
from .engine.ops import UnsupportedPackage
from .engine.train_program import TrainProgram, build_train_program, lr_fixed
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

    def set_lr(self, lr: float) -> None:
        """Change the learning rate of the next steps in place.

        The rate is a field (E0/E1, at LR_FRAC fractional bits) of each SGD descriptor, and the
        SGDs are the last descriptors of the ``train`` list: only those descriptors are rebuilt
        and rewritten (one write of #weights x DESC_WORDS words), nothing else moves.
        """
        lr_q = lr_fixed(lr)
        if not 0 <= lr_q < 1 << 47:
            raise UnsupportedPackage(f"learning rate {lr}: the engine takes 0 <= lr < 2^23")
        prog = self.program
        if lr_q == prog.lr_q:
            return
        train = prog.forward + prog.backward
        first = next(k for k, op in enumerate(train) if op.kind == "SGD")
        if any(op.kind != "SGD" for op in train[first:]):
            raise AssertionError("the SGD descriptors are not the tail of the train list")  # a builder bug
        tag0 = len(prog.setup) + len(prog.forward) + 1  # tag of train[0] (see build_train_program)
        sgds = [replace(op, fields=op.fields | split64(lr_q)) for op in train[first:]]
        words = np.stack([op.descriptor(tag0 + first + k) for k, op in enumerate(sgds)]).astype("<u4")
        addr, _ = prog.program("train")
        self.device.write(addr + first * words.shape[1] * 4, words.reshape(-1).view(np.uint8))
        prog.backward[len(prog.backward) - len(sgds) :] = sgds
        prog.lr_q = lr_q

    def logits(self) -> np.ndarray:
        """(num_classes,) int16 logits of the last forward (at the ``head.out`` format)."""
        return self.read("head.out")[0]

    def gradient(self, key: str) -> tuple[np.ndarray, int]:
        """(values in the engine's 2-D layout, frac_bits) of a weight's gradient, or of ``loss.dlogits``."""
        g = self.program.grads[key]
        return self.read("grad." + key), int(self.read("grad.formats")[0, g.slot])

    def weight(self, key: str) -> np.ndarray:
        return self.read(key)

    def master(self, key: str) -> np.ndarray:
        return self.read("master." + key)
