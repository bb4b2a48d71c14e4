"""``trilevel export``: checkpoint -> 16-bit fixed-point model package (docs/model_package.md)."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import torch

from trilevel import data as tdata
from trilevel.checkpoint import CheckpointError, load_model

from . import data
from .arch import UnsupportedModel
from .output_dir import check_output
from .package_writer import ExportError, PrecisionWarning, write_package


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trilevel export", description=__doc__)
    p.add_argument("--checkpoint", required=True, help="training checkpoint (e.g. runs/x/last.pt)")
    p.add_argument("--output", required=True, help="package directory to write (replaced if it is a package)")
    p.add_argument("--calib-images", type=int, default=256, help="training images for activation ranges")
    p.add_argument("--golden-samples", type=int, default=4, help="test images with golden vectors (0: none)")
    p.add_argument(
        "--data-dir", default=None, help="Fashion-MNIST folder (default: $FASHION_MNIST_DIR or Debian's)"
    )
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX model")
    p.add_argument(
        "--onnx-only",
        action="store_true",
        help="write only the ONNX model, to the file --output (any dataset, ImageFolder trees included)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for picking calibration and golden images")
    return p


def _datasets(cfg, data_dir, model):
    """(train, test) exactly as training built them, checked against the model's input."""
    if cfg.dataset not in tdata.IN_MEMORY:
        raise ExportError(
            f"the fixed-point package calibrates on in-memory datasets (fashion-mnist, synthetic), not "
            f"{cfg.dataset!r}; use --onnx-only for the ONNX model alone"
        )
    if data_dir is not None:
        cfg.data_dir = data_dir
    train, test = tdata.build_data(cfg)[:2]
    native = tuple(train.images.shape[1:])
    wanted = (model.patch_embed.proj.in_channels, *model.patch_embed.img_size)
    if native != wanted:  # the package's input rule is normalisation only, no resize
        raise ExportError(
            f"the model takes {wanted} inputs but {cfg.dataset} images are {native}; "
            "export supports models trained at the dataset's own size"
        )
    return train, test


def run_onnx_only(args) -> dict:
    """The ONNX model alone, checked against PyTorch on a few of the run's own images."""
    from .onnx_export import export_onnx

    out = Path(args.output)
    if out.is_dir():
        raise ExportError(f"--output {out} is a folder; --onnx-only writes one file (e.g. model.onnx)")
    model, cfg, _ = load_model(args.checkpoint)
    if args.data_dir is not None:
        cfg.data_dir = args.data_dir
    size, chans = model.patch_embed.img_size[0], model.patch_embed.proj.in_channels
    ds = tdata.build_data(cfg, size, chans)
    split = ds.test if ds.test is not None else ds.train
    idx = data.pick(split, 8, args.seed).tolist()
    if isinstance(split, tdata.InMemoryDataset):
        from trilevel.device_loader import DeviceLoader

        loader = DeviceLoader(split, len(idx), size, chans, torch.device("cpu"), train=False)
        sample = loader.transform(split.images[idx])
    else:  # an ImageFolder: its evaluation transform (train/ alone carries the augmenting one)
        split.transform = tdata.eval_transform(size, chans)
        sample = torch.stack([split[i][0] for i in idx])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.partial.onnx")
    try:
        with torch.no_grad():
            section = export_onnx(model, tmp, sample)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return section


def run(args) -> dict:
    if args.calib_images < 1 or args.golden_samples < 0:
        raise ExportError("--calib-images must be >= 1 and --golden-samples >= 0")
    if args.seed < 0:
        raise ExportError(f"--seed must be >= 0, got {args.seed}")
    out = check_output(args.output)  # fail before the slow part
    if out in Path(os.path.abspath(args.checkpoint)).parents:
        raise ExportError(
            f"the checkpoint {args.checkpoint} lies inside --output {args.output}, which export replaces"
        )
    model, cfg, ckpt = load_model(args.checkpoint)
    train, test = _datasets(cfg, args.data_dir, model)
    calib_idx = data.pick(train, args.calib_images, args.seed)
    calib = data.normalize(train.images[calib_idx], train.mean, train.std)
    golden_x = golden_y = None
    if args.golden_samples:
        gi = data.pick(test, args.golden_samples, args.seed + 1)
        golden_x, golden_y = data.normalize(test.images[gi], test.mean, test.std), test.labels[gi]
    with torch.no_grad():
        return write_package(
            model,
            ckpt,
            calib,
            out,
            golden_images=golden_x,
            golden_labels=golden_y,
            onnx=not args.no_onnx,
            normalization=data.normalization(train),
            calibration_info={"dataset": cfg.dataset, "split": "train", "seed": args.seed},
            producer={"tool": "trilevel export", "checkpoint": Path(args.checkpoint).name},
        )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.onnx_only:
        return _run_onnx_only(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PrecisionWarning)
        rc = _run_reporting_errors(args)
    for w in caught:  # precision warnings as one line each, after the work
        if issubclass(w.category, PrecisionWarning):
            print(f"warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return rc


def _run_onnx_only(args) -> int:
    try:
        section = run_onnx_only(args)
    except (CheckpointError, ExportError, UnsupportedModel, tdata.DatasetError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.output}: ONNX opset {section['opset']}, max |onnxruntime - torch| "
        f"{section['max_abs_diff_vs_torch']:.2g} on {section['check_images']} images"
    )
    return 0


def _run_reporting_errors(args) -> int:
    try:
        manifest = run(args)
    except KeyboardInterrupt:
        print(f"interrupted; nothing was written to {args.output}", file=sys.stderr)
        return 130
    except (CheckpointError, ExportError, UnsupportedModel, tdata.DatasetError, OSError) as e:
        # Caused by the input or the disk: one line. Anything else is a bug and keeps its traceback.
        print(f"error: {e}", file=sys.stderr)
        return 2
    n = len(manifest["files"])
    print(f"wrote {args.output}: {n} files, format version {manifest['format_version']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
