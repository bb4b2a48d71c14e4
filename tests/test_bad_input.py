"""Hostile and careless input: one error line, a non-zero exit, nothing outside the output changed.

The matrix (MATRIX below) runs `trilevel train`, `trilevel export` and `trilevel viz` in
process on tiny inputs; each row gives the input, a part of the expected one-line error
and the exit code. Every row also checks that no file outside the command's own output
changed, and rows that must keep earlier results (a checkpoint, a package) check those
byte for byte. PACKAGE_MATRIX does the same for ``load_package`` (its contract is one
PackageError). tests/test_package_fuzz.py fuzzes the loader further.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tiny_vit
import torch
from trilevel_host import PackageError, load_package

from model_export import output_dir
from model_export.cli import main as export_main
from trilevel.checkpoint import load_checkpoint
from trilevel.cli import main as trilevel_main
from trilevel.viz import main as viz_main

TINY = ["--model", "fmnist-tiny", "--dataset", "synthetic", "--synthetic-size", "384", "--batch-size", "64",
        "--workers", "0", "--epochs", "1", "--mixup", "0", "--cutmix", "0"]  # fmt: skip
GOOD_RUN = [*TINY[:-6], "--epochs", "2", "--mixup", "0", "--cutmix", "0"]  # resumable after --stop-after 1


# ------------------------------------------------------------------ helpers
def snapshot(root: Path, skip: Path | None = None) -> dict[str, str]:
    """Every path under ``root`` (but ``skip``) -> its kind and content hash or link target."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        if skip is not None and (d == skip or skip in d.parents):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = d / name
            if skip is not None and p == skip:
                continue
            if p.is_symlink():
                out[str(p)] = "link " + os.readlink(p)
            elif p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[str(p)] = "dir"
    return out


def one_error_line(err: str) -> str:
    """The error line, which must be the only one and the last a terminal shows (progress bars
    redraw with \\r; notes such as "resumed from ..." may come before it); no traceback."""
    lines = [ln.split("\r")[-1].strip() for ln in err.split("\n")]
    lines = [ln for ln in lines if ln]
    errors = [ln for ln in lines if "error:" in ln or ln.startswith("interrupted")]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in err, err
    return errors[0]


class Evil:
    """A pickle payload: unpickling it with the full unpickler creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def crafted_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"version": 2, "config": {}, "model": {}, "payload": Evil(marker)}, path)
    return path


def edit_checkpoint(src: Path, dst: Path, edit) -> Path:
    ckpt = torch.load(src, weights_only=True)
    edit(ckpt)
    torch.save(ckpt, dst)
    return dst


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    """A 2-epoch synthetic run stopped after epoch 1: its last.pt resumes."""
    out = tmp_path_factory.mktemp("good") / "run"
    assert trilevel_main(["train", *GOOD_RUN, "--output", str(out), "--stop-after", "1"]) == 0
    return out


@functools.cache
def tiny_checkpoint() -> Path:
    """The tiny test model, untrained (export and viz only need its shapes), with an example subset."""
    active = torch.arange(60000) % 5 > 0
    return tiny_vit.save(tiny_vit.build(), tiny_vit.workdir() / "untrained.pt", example_active=active)


@pytest.fixture(scope="module")
def quick_package(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("quick") / "pkg"
    assert export_main(tiny_vit.quick_export_args(tiny_checkpoint(), out)) == 0
    return out


def image_tree(root: Path, classes: dict[str, list[str]]) -> Path:
    """root/<split>/<class>/<i>.png of coloured noise; classes: split -> class names."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, names in classes.items():
        for c, name in enumerate(names):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(8):
                pixels = rng.integers(0, 255, (28, 28, 3), dtype=np.uint8) // (c + 1)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


# ------------------------------------------------------------------ the matrix
# Each setup(tmp, ctx) returns the argv; ctx has "out" (the command's own output), "keep"
# (files that must stay byte-identical), "monkeypatch" and "fixture" (pytest's getfixturevalue).


def train(*extra):
    return lambda tmp, ctx: ["train", *TINY, "--output", str(ctx["out"]), *extra]


def train_output(kind):
    def setup(tmp, ctx):
        (tmp / "file").write_text("not a folder")
        ctx["out"] = tmp / "file" if kind == "file" else tmp / "file" / "run"
        return ["train", *TINY, "--output", str(ctx["out"])]

    return setup


def train_unwritable(tmp, ctx):
    def refuse(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    ctx["monkeypatch"].setattr("trilevel.validate.tempfile.TemporaryFile", refuse)
    return ["train", *TINY, "--output", str(ctx["out"])]


def train_images(classes, corrupt=False, workers="0"):
    def setup(tmp, ctx):
        root = image_tree(tmp / "data", classes)
        if corrupt:  # one image of the 16 replaced by a broken JPEG (every image is read in the epoch)
            (root / "train" / classes["train"][0] / "3.png").unlink()
            (root / "train" / classes["train"][0] / "3.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
        return ["train", "--model", "fmnist-tiny", "--dataset", str(root), "--epochs", "1", "--batch-size", "4",
                "--workers", workers, "--mixup", "0", "--cutmix", "0", "--output", str(ctx["out"])]  # fmt: skip

    return setup


def resume_from(make_ckpt):
    """Resume the good run from a last.pt made by make_ckpt(good_last_pt, dst, tmp)."""

    def setup(tmp, ctx):
        shutil.copytree(ctx["fixture"]("good_run"), ctx["out"])
        last = ctx["out"] / "last.pt"
        make_ckpt(ctx["fixture"]("good_run") / "last.pt", last, tmp)
        ctx["keep"].append(last)
        return ["train", *GOOD_RUN, "--output", str(ctx["out"])]

    return setup


def resume_with_patch(target, replacement):
    """Resume the good run with ``target`` monkeypatched (a full disk, a diverging loss)."""

    def setup(tmp, ctx):
        shutil.copytree(ctx["fixture"]("good_run"), ctx["out"])
        ctx["keep"].append(ctx["out"] / "last.pt")
        ctx["monkeypatch"].setattr(target, replacement)
        return ["train", *GOOD_RUN, "--output", str(ctx["out"])]

    return setup


def full_disk_save(obj, f, *args, **kwargs):
    Path(f).write_bytes(b"half a checkpoint")
    raise OSError(errno.ENOSPC, "No space left on device")


def nan_loss(self, x, target):
    return torch.nn.functional.cross_entropy(x, target) * float("nan")


def drop_field(name):
    return lambda src, dst, tmp: edit_checkpoint(src, dst, lambda c: c.pop(name))


def crafted(src, dst, tmp):
    crafted_checkpoint(dst, tmp / "PWNED")


def export(*extra, ckpt=None):
    def setup(tmp, ctx):
        path = ckpt(tmp) if ckpt else tiny_checkpoint()
        return ["export", *tiny_vit.quick_export_args(path, ctx["out"]), *extra]

    return setup


def tiny_ckpt_edit(edit):
    return lambda tmp: edit_checkpoint(tiny_checkpoint(), tmp / "edited.pt", edit)


def set_weight(name, value):
    def edit(c):
        c["model"][name][0] = value

    return tiny_ckpt_edit(edit)


def export_into(kind):
    def setup(tmp, ctx):
        out = ctx["out"]
        if kind == "foreign":  # a web page with a file that happens to be called manifest.json
            out.mkdir()
            (out / "manifest.json").write_text('{"name": "my app", "start_url": "index.html"}')
            (out / "index.html").write_text("<html>keep me</html>")
        elif kind == "cwd":
            here = tmp / "here"
            here.mkdir()
            (here / "notes.txt").write_text("keep")
            ctx["monkeypatch"].chdir(here)
            ctx["out"] = Path(".")
        elif kind == "link":
            shutil.copytree(ctx["fixture"]("quick_package"), tmp / "real")
            out.symlink_to(tmp / "real")
        elif kind == "under_file":
            (tmp / "file").write_text("x")
            ctx["out"] = tmp / "file" / "pkg"
        elif kind == "holds_checkpoint":
            shutil.copytree(ctx["fixture"]("quick_package"), out)
            shutil.copy(tiny_checkpoint(), out / "tiny.pt")
            return ["export", *tiny_vit.quick_export_args(out / "tiny.pt", out)]
        return ["export", *tiny_vit.quick_export_args(tiny_checkpoint(), ctx["out"])]

    return setup


def export_over_package_with_patch(target, replacement_factory):
    """Export over an earlier package while ``target`` fails (full disk, Ctrl-C)."""

    def setup(tmp, ctx):
        shutil.copytree(ctx["fixture"]("quick_package"), ctx["out"])
        ctx["monkeypatch"].setattr(target, replacement_factory())
        return ["export", *tiny_vit.quick_export_args(tiny_checkpoint(), ctx["out"])]

    return setup


def np_save_fills_disk():
    real, calls = np.save, [0]

    def save(path, arr, **kwargs):
        calls[0] += 1
        if calls[0] > 5:
            Path(path).write_bytes(b"\x93NUMPY")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, arr, **kwargs)

    return save


def interrupted():
    def calibrate(*args, **kwargs):
        raise KeyboardInterrupt

    return calibrate


def viz(kind):
    def setup(tmp, ctx):
        if kind == "crafted":
            ckpt = crafted_checkpoint(tmp / "evil.pt", tmp / "PWNED")
        else:
            ckpt = tiny_checkpoint()
            (tmp / "out.png").write_text("a file")
            ctx["out"] = tmp / "out.png"
        return ["viz", "--checkpoint", str(ckpt), "--output", str(ctx["out"])]

    return setup


MATRIX = [
    # training: settings found wrong before the first step
    ("lr-inf", train("--lr", "inf"), "lr must be in", 2),
    (
        "lr-1e30-diverges",
        train("--lr", "1e30", "--warmup-epochs", "0", "--max-steps-per-epoch", "2"),
        "became non-finite",
        2,
    ),  # fmt: skip
    (
        "img-size-not-multiple",
        train("--img-size", "30"),
        "not a positive multiple of the model's patch size 4",
        2,
    ),
    ("img-size-2", train("--img-size", "2"), "not a positive multiple", 2),
    ("synthetic-size-negative", train("--synthetic-size", "-5"), "synthetic-size must be in", 2),
    ("num-classes-below-dataset", train("--num-classes", "5"), "below the dataset's 10 classes", 2),
    ("num-classes-1", train("--num-classes", "1"), "num-classes must be in", 2),
    ("duplicate-locations", train("--locations", "1", "1", "3"), "distinct block indices", 2),
    ("eval-every-0", train("--eval-every", "0"), "eval-every must be in", 2),
    ("seed-negative", train("--seed", "-1"), "seed must be in", 2),
    ("drop-path-1.5", train("--drop-path", "1.5"), "drop-path must be in", 2),
    ("warmup-window-reversed", train("--warmup-start", "3", "--warmup-end", "1"), "is after warmup-end", 2),
    ("output-is-a-file", train_output("file"), "is a file, not a folder", 2),
    ("output-under-a-file", train_output("under"), "which is a file", 2),
    ("output-not-writable", train_unwritable, "cannot be written (Permission denied)", 2),
    ("one-class-dataset", train_images({"train": ["only"]}), "training needs at least 2", 2),
    (
        "val-classes-differ",
        train_images({"train": ["a", "b"], "val": ["a", "c"]}),
        "has classes that train/ lacks: c",
        2,
    ),
    ("corrupt-image", train_images({"train": ["a", "b"]}, corrupt=True), "cannot read image", 2),
    ("corrupt-image-in-worker", train_images({"train": ["a", "b"]}, True, "1"), "a/3.jpg (", 2),
    # training: what a resumed run reads
    ("resume-crafted-pickle", resume_from(crafted), "refusing to unpickle it", 2),
    ("resume-missing-field", resume_from(drop_field("optimizer")), "lacks the field optimizer", 2),
    ("resume-missing-rng", resume_from(drop_field("rng")), "lacks the field rng", 2),
    ("disk-full-checkpoint", resume_with_patch("torch.save", full_disk_save), "No space left on device", 2),
    (
        "nan-loss-keeps-checkpoint",
        resume_with_patch("timm.loss.LabelSmoothingCrossEntropy.forward", nan_loss),
        "became non-finite in epoch 2",
        2,
    ),  # fmt: skip
    # export
    ("export-over-foreign-folder", export_into("foreign"), "is not a model package", 2),
    ("export-output-dot", export_into("cwd"), "is the current directory", 2),
    ("export-output-symlink", export_into("link"), "is a symbolic link", 2),
    ("export-output-under-file", export_into("under_file"), "which is not a folder", 2),
    ("export-checkpoint-inside-output", export_into("holds_checkpoint"), "lies inside --output", 2),
    ("export-seed-negative", export("--seed", "-1"), "--seed must be >= 0", 2),
    (
        "export-crafted-pickle",
        export(ckpt=lambda tmp: crafted_checkpoint(tmp / "e.pt", tmp / "PWNED")),
        "refusing to unpickle it",
        2,
    ),  # fmt: skip
    (
        "export-missing-field",
        export(ckpt=tiny_ckpt_edit(lambda c: c.pop("trilevel"))),
        "lacks the field trilevel",
        2,
    ),
    (
        "export-bad-model-spec",
        export(ckpt=tiny_ckpt_edit(lambda c: c["model_spec"]["kwargs"].update(depth="x"))),
        "cannot be built",
        2,
    ),  # fmt: skip
    (
        "export-nan-weight",
        export(ckpt=set_weight("head.bias", float("nan"))),
        "weight head.bias holds 1 NaN",
        2,
    ),
    (
        "export-inf-weight",
        export(ckpt=set_weight("blocks.0.norm1.weight", float("inf"))),
        "norm1.weight holds 1",
        2,
    ),
    (
        "export-huge-weight",
        export(ckpt=set_weight("head.bias", 1e30)),
        "weight head.bias has max |w| = 1e+30",
        2,
    ),
    (
        "export-disk-full",
        export_over_package_with_patch("numpy.save", np_save_fills_disk),
        "No space left",
        2,
    ),
    (
        "export-interrupted",
        export_over_package_with_patch("model_export.package_writer.calibrate", interrupted),
        "interrupted; nothing was written",
        130,
    ),  # fmt: skip
    # viz
    ("viz-crafted-pickle", viz("crafted"), "refusing to unpickle it", 2),
    ("viz-output-is-a-file", viz("file"), "is a file, not a folder", 2),
]


@pytest.mark.parametrize("setup, message, code", [pytest.param(*row[1:], id=row[0]) for row in MATRIX])
def test_bad_input_matrix(tmp_path, monkeypatch, capsys, request, setup, message, code):
    ctx = {
        "out": tmp_path / "out",
        "keep": [],
        "monkeypatch": monkeypatch,
        "fixture": request.getfixturevalue,
    }
    argv = setup(tmp_path, ctx)
    out = ctx["out"].absolute()
    is_train = argv[0] == "train"
    before = snapshot(tmp_path, skip=out if is_train else None)
    kept = {p: p.read_bytes() for p in ctx["keep"]}
    capsys.readouterr()

    rc = {"train": trilevel_main, "export": export_main, "viz": viz_main}[argv[0]](
        argv if is_train else argv[1:]
    )

    line = one_error_line(capsys.readouterr().err)
    assert rc == code, line
    assert message in line, line
    assert snapshot(tmp_path, skip=out if is_train else None) == before
    for p, data in kept.items():
        assert p.read_bytes() == data, f"{p} changed"
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob(".*.tmp-*"))
    assert not (tmp_path / "PWNED").exists()  # no code from a file ran


def test_the_crafted_payload_is_live(tmp_path):
    """The checkpoint the matrix refuses does run code under the full unpickler (so the rows mean something)."""
    path = crafted_checkpoint(tmp_path / "evil.pt", tmp_path / "PWNED")
    torch.load(path, weights_only=False)
    assert (tmp_path / "PWNED").exists()


# ------------------------------------------------------------------ the package loader
def _manifest(p):
    return json.loads((p / "manifest.json").read_text())


def _write(p, m):
    (p / "manifest.json").write_text(json.dumps(m))


def _rehash(p, rel, **extra):
    m = _manifest(p)
    data = (p / rel).read_bytes() if (p / rel).stat().st_size < 1 << 24 else b""
    m["files"][rel].update(bytes=(p / rel).stat().st_size, sha256=hashlib.sha256(data).hexdigest(), **extra)
    _write(p, m)


def edit(fn):
    def apply(p, tmp):
        m = _manifest(p)
        fn(m)
        _write(p, m)

    return apply


def model_field(key, value):
    return edit(lambda m: m["model"].__setitem__(key, value))


W = "weights/blocks.0.attn.qkv.weight.npy"


def lying_header(p, tmp):
    """A header claiming an 8 GiB array in front of the real data, with the manifest agreeing."""
    import io

    rel, n = "example_subset.npy", 1 << 30
    raw = (p / rel).read_bytes()
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": "<i8", "fortran_order": False, "shape": (n,)})
    (p / rel).write_bytes(f.getvalue() + raw[10 + int.from_bytes(raw[8:10], "little") :])
    _rehash(p, rel, shape=[n])
    m = _manifest(p)
    m["example_subset"].update(shape=[n], kept=n)
    _write(p, m)


def golden_object(p, tmp):
    m = _manifest(p)
    entry = {"file": W, "dtype": "object", "shape": [96, 32], "kind": "activation"}
    m["golden"] = {"samples": 1, "tensors": {"forward/input": entry}}
    _write(p, m)


def link_to_outside(p, tmp):
    (tmp / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (p / W).unlink()
    (p / W).symlink_to(tmp / "passwd")
    _rehash(p, W)


def linked_folder(p, tmp):
    shutil.move(p / "luts", tmp / "luts")
    (p / "luts").symlink_to(tmp / "luts")


def sparse_file(p, tmp):
    with open(p / W, "r+b") as f:
        f.truncate(64 << 30)  # 64 GiB, almost nothing on disk
    _rehash(p, W)


def manifest_link(p, tmp):
    shutil.move(p / "manifest.json", tmp / "m.json")
    (p / "manifest.json").symlink_to(tmp / "m.json")


def file_is_folder(p, tmp):
    (p / W).unlink()
    (p / W).mkdir()


PACKAGE_MATRIX = [
    ("files-as-list", edit(lambda m: m.__setitem__("files", list(m["files"]))), "files must be an object"),
    (
        "weights-as-list",
        edit(lambda m: m.__setitem__("weights", list(m["weights"]))),
        "weights must be an object",
    ),
    ("entry-without-bytes", edit(lambda m: m["files"][W].pop("bytes")), "lacks 'bytes'"),
    (
        "bytes-as-string",
        edit(lambda m: m["files"][W].__setitem__("bytes", "1234")),
        "bytes must be an integer",
    ),
    ("unknown-dtype", edit(lambda m: m["files"][W].__setitem__("dtype", "int17")), "dtype is 'int17'"),
    (
        "deep-nesting",
        lambda p, t: (p / "manifest.json").write_text("[" * 100000 + "]" * 100000),
        "not valid JSON",
    ),
    ("nan-in-json", lambda p, t: (p / "manifest.json").write_text('{"format": NaN}'), "not valid JSON"),
    (
        "frac-bits-nan",
        edit(lambda m: m["weights"]["head.weight"].__setitem__("frac_bits", float("nan"))),
        "NaN is not",
    ),
    ("token-keep-nan", edit(lambda m: m["selector"].__setitem__("token_keep", float("nan"))), "NaN is not"),
    (
        "token-keep-huge-exponent",
        lambda p, t: (p / "manifest.json").write_text(
            (p / "manifest.json").read_text().replace('"token_keep": 0.7', '"token_keep": 1e999')
        ),
        "finite number",
    ),  # fmt: skip
    ("duplicate-key", lambda p, t: (p / "manifest.json").write_text('{"a": 1, "a": 2}'), "repeats a key"),
    ("npy-header-larger-than-data", lying_header, "header announces"),
    ("golden-dtype-object", golden_object, "dtype is 'object'"),
    (
        "frac-bits-negative",
        edit(lambda m: m["weights"]["head.weight"].__setitem__("frac_bits", -100)),
        "outside [-16, 40]",
    ),
    (
        "frac-bits-absurd",
        edit(lambda m: m["activations"]["head.out"].__setitem__("frac_bits", 1000)),
        "outside [-16, 40]",
    ),
    ("frac-bits-float", edit(lambda m: m["input"].__setitem__("frac_bits", 7.5)), "must be an integer"),
    ("token-keep-zero", edit(lambda m: m["selector"].__setitem__("token_keep", 0)), "outside (0.0, 1.0]"),
    ("token-keep-two", edit(lambda m: m["selector"].__setitem__("token_keep", 2.0)), "outside (0.0, 1.0]"),
    (
        "token-keep-other",
        edit(lambda m: m["selector"].__setitem__("token_keep", 0.5)),
        "disagree with the keep ratios",
    ),
    ("embed-dim-zero", model_field("embed_dim", 0), "outside [1, 16384]"),
    ("embed-dim-other", model_field("embed_dim", 48), "!= embed_dim 48"),
    ("depth-negative", model_field("depth", -1), "outside [1, 256]"),
    ("depth-other", model_field("depth", 3), "which the model section does not imply"),
    ("depth-below-locations", model_field("depth", 2), "lie below depth 2"),
    ("num-heads-other", model_field("num_heads", 4), "num_heads 4 x head_dim"),
    ("ln-eps-string", model_field("ln_eps", "1e-6"), "must be a finite number"),
    ("arithmetic-other", edit(lambda m: m["arithmetic"].__setitem__("prob_frac", 14)), "outside [15, 15]"),
    ("listed-symlink-outside", link_to_outside, "is a symbolic link"),
    ("listed-under-symlinked-folder", linked_folder, "luts is a symbolic link"),
    ("sparse-64-gib", sparse_file, "more than this reader's limit"),
    ("manifest-is-a-link", manifest_link, "is not a regular file"),
    ("listed-file-is-a-folder", file_is_folder, "is not a regular file"),
    (
        "path-traversal",
        edit(lambda m: m["files"].__setitem__("../x.npy", m["files"].pop(W))),
        "outside the package",
    ),
]


@pytest.mark.parametrize("mutate, message", [pytest.param(*r[1:], id=r[0]) for r in PACKAGE_MATRIX])
def test_package_matrix(tmp_path, quick_package, mutate, message):
    pkg = tmp_path / "pkg"
    shutil.copytree(quick_package, pkg)
    mutate(pkg, tmp_path)
    with pytest.raises(PackageError) as e:
        load_package(pkg)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


# ------------------------------------------------------------------ what careful input gets
def test_no_resume_keeps_the_old_run_aside(tmp_path, good_run, capsys):
    out = tmp_path / "run"
    shutil.copytree(good_run, out)
    old = (out / "last.pt").read_bytes()
    argv = ["train", *GOOD_RUN, "--lr", "1e-3", "--max-steps-per-epoch", "1", "--output", str(out)]
    assert trilevel_main(argv) == 2  # other settings: refused, as before
    assert "use another --output or --no-resume" in capsys.readouterr().err
    assert trilevel_main([*argv, "--no-resume"]) == 0
    err = capsys.readouterr().err
    aside = [p for p in out.iterdir() if p.name.startswith("replaced-")]
    assert len(aside) == 1 and "were moved to" in err and str(aside[0]) in err
    assert (aside[0] / "last.pt").read_bytes() == old and (aside[0] / "log.json").is_file()
    assert load_checkpoint(out / "last.pt")["config"]["lr"] == 1e-3


def test_val_tree_with_fewer_classes_is_relabelled(tmp_path):
    from torchvision.datasets import ImageFolder

    from trilevel.data import align_classes

    root = image_tree(tmp_path, {"train": ["cat", "dog", "eel"], "val": ["dog"]})
    train, val = ImageFolder(str(root / "train")), ImageFolder(str(root / "val"))
    assert set(val.targets) == {0}  # ImageFolder alone calls the only val class 0, which is "cat"
    align_classes(train, val, root / "val")
    assert set(val.targets) == {1} and val[0][1] == 1 and val.classes == train.classes


def test_package_folder_follows_the_umask(tmp_path, quick_package):
    old = os.umask(0o022)
    try:
        out = tmp_path / "pkg"
        assert export_main(tiny_vit.quick_export_args(tiny_checkpoint(), out)) == 0
    finally:
        os.umask(old)
    assert (out.stat().st_mode & 0o777) == 0o755
    assert (out / "weights").stat().st_mode & 0o777 == 0o755
    assert (out / "manifest.json").stat().st_mode & 0o777 == 0o644


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_kill_during_the_swap_leaves_a_package_at_the_output(tmp_path, quick_package, monkeypatch):
    """The swap is one step: killed right after it, the output holds the new package, and the old
    one (in a temporary folder) is cleaned by the next export."""
    out = tmp_path / "pkg"
    shutil.copytree(quick_package, out)
    new = tmp_path / ".pkg.tmp-1-x"
    shutil.copytree(quick_package, new)
    (new / "marker").write_text("new")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(output_dir.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        output_dir.replace_dir(new, out)
    assert (out / "marker").read_text() == "new" and load_package(out)
    assert new.is_dir() and not (new / "marker").exists()  # the old package, left behind


def test_the_next_export_cleans_up_after_killed_ones(tmp_path, quick_package):
    dead = _dead_pid()
    out = tmp_path / "pkg"
    stale_tmp = tmp_path / f".pkg.tmp-{dead}-abcd"
    stale_tmp.mkdir()
    (stale_tmp / "half.npy").write_bytes(b"x")
    live_tmp = tmp_path / f".pkg.tmp-{os.getppid()}-abcd"  # a running process's: left alone
    live_tmp.mkdir()
    old = tmp_path / f".pkg.old-{dead}"  # killed between the two renames of the fallback
    shutil.copytree(quick_package, old)
    output_dir.clean_stale(out)
    assert not stale_tmp.exists() and live_tmp.exists() and not old.exists()
    assert load_package(out).version == 1  # the old package is back in place
    unrelated = tmp_path / "keep"
    unrelated.mkdir()
    assert export_main(tiny_vit.quick_export_args(tiny_checkpoint(), out)) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live_tmp.name, "keep", "pkg"])
