"""The host's numpy image path: idx files, normalisation and quantisation as the exporter did them."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import tiny_vit
from trilevel_host import load_package
from trilevel_host.data import DatasetError, load_idx_split, quantize_images, read_idx


def write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def write_split(folder, images: np.ndarray, labels: np.ndarray, prefix="t10k") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels)


def test_golden_inputs_are_reproduced_without_torch():
    pkg = load_package(tiny_vit.package())
    images, labels = load_idx_split("fashion-mnist", "test")
    assert images.shape == (10000, 1, 28, 28) and images.dtype == np.uint8
    S = pkg.manifest["golden"]["samples"]
    seed = pkg.manifest["calibration"]["seed"]
    idx = np.sort(np.random.default_rng(seed + 1).choice(len(images), size=S, replace=False))  # export's pick
    np.testing.assert_array_equal(quantize_images(images[idx], pkg.manifest), pkg.golden("forward/input")[0])
    np.testing.assert_array_equal(labels[idx], pkg.array("golden/labels.npy"))


def test_a_folder_of_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (5, 8, 8)), rng.integers(0, 10, 5)
    write_split(tmp_path, images, labels)
    x, y = load_idx_split(tmp_path, "test")
    np.testing.assert_array_equal(x[:, 0], images)
    np.testing.assert_array_equal(y, labels)


def test_broken_idx_files_are_refused(tmp_path):
    p = tmp_path / "a-idx"
    write_idx(p, np.zeros((4, 3, 3)))
    p.write_bytes(p.read_bytes()[:-1])
    with pytest.raises(DatasetError, match="holds 35 bytes of data for shape"):
        read_idx(p)
    p.write_bytes(b"\x00\x00\x0d\x01" + b"\x00" * 8)
    with pytest.raises(DatasetError, match="not an idx file of uint8 data"):
        read_idx(p)
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte"):
        load_idx_split(tmp_path, "test")
    write_split(tmp_path / "pair", np.zeros((4, 3, 3)), np.zeros(3))
    with pytest.raises(DatasetError, match="do not pair up"):
        load_idx_split(tmp_path / "pair", "test")
