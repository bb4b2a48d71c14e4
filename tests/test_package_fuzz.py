"""Fuzz of ``load_package``: mutated manifests and files give PackageError or a correct load.

The base is a two-block package (a few dozen files, so a load takes milliseconds). Each
case mutates the manifest (a field set to another JSON value, deleted, wrapped in a list
or nudged; a file name changed; the whole text broken) and/or a listed file (truncated,
extended, a byte flipped, replaced by a link, a folder or an .npy header that lies), and
may rehash the file so that only the deeper checks can catch it. Anything but PackageError
from the loader fails the test, and so does a load that succeeds but whose arrays or
reference forward then fail. Hypothesis runs with a fixed seed (derandomize), no example
database, CASES cases in all.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trilevel_host import PackageError, load_package
from trilevel_host.reference import ReferenceModel

from model_export.cli import main as export_main
from trilevel import models
from trilevel.checkpoint import save_checkpoint
from trilevel.config import TrainConfig
from trilevel.patch import patch

CASES = {"manifest": int(os.environ.get("FUZZ_M", 2000)), "files": int(os.environ.get("FUZZ_F", 1000))}
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=list(HealthCheck),
)
KWARGS = dict(
    img_size=28, patch_size=7, in_chans=1, num_classes=10, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0
)
KEEP_GOLDEN = (
    "forward/input",
    "forward/blocks.1.keep_idx",
    "float_logits",
    "labels",
    "train/master/head.bias",
)


def _two_block_package(work) -> None:
    """Export a random-weight two-block model (selector in block 1) and keep a few golden files."""
    torch.manual_seed(0)
    model = patch(models.create("vit_tiny_patch16_224", dict(KWARGS)), 0.7, 0.5, (1,))
    cfg = TrainConfig(model="vit_tiny_patch16_224", token_keep=0.7, attn_keep=0.5, locations=(1,))
    state = {"token_keep": 0.7, "attn_keep": 0.5, "locations": [1], "stat_layer": None}
    save_checkpoint(
        work / "one.pt",
        {
            "config": cfg.to_dict(),
            "model_spec": {"timm_name": "vit_tiny_patch16_224", "kwargs": dict(KWARGS)},
            "trilevel": state,
            "model": model.state_dict(),
            "example_selector": {"active": torch.arange(100) % 3 > 0},
        },
    )
    pkg = work / "pkg"
    args = ["--checkpoint", str(work / "one.pt"), "--output", str(pkg), "--no-onnx", "--golden-samples", "2",
            "--calib-images", "16"]  # fmt: skip
    assert export_main(args) == 0
    m = json.loads((pkg / "manifest.json").read_text())
    for name, entry in list(m["golden"]["tensors"].items()):
        if name not in KEEP_GOLDEN:
            del m["golden"]["tensors"][name]
            del m["files"][entry["file"]]
            (pkg / entry["file"]).unlink()
    (pkg / "manifest.json").write_text(json.dumps(m, indent=1))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    work = tmp_path_factory.mktemp("fuzz")
    _two_block_package(work)
    pkg = work / "pkg"
    assert load_package(pkg).version == 1
    (work / "outside.txt").write_text("secret\n")
    text = (pkg / "manifest.json").read_text()
    files = {rel: (pkg / rel).read_bytes() for rel in json.loads(text)["files"]}
    return work, pkg, text, files


def _put(path, data: str | bytes) -> None:
    """Write a new file in place of ``path``: unlinking first skips ext4's flush on truncate."""
    path.unlink(missing_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def _restore(pkg, text, files, touched) -> None:
    for rel in touched:
        p = pkg / rel
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        _put(p, files[rel])
    if (pkg / "manifest.json").read_text() != text:
        _put(pkg / "manifest.json", text)


def _check_outcome(pkg) -> str:
    """PackageError ("refused"), or a package whose every array and reference forward work ("loaded")."""
    try:
        p = load_package(pkg)
    except PackageError as e:
        assert "\n" not in str(e)
        return "refused"
    m = p.manifest
    for rel, entry in m["files"].items():
        if rel.endswith(".npy"):
            a = p.array(rel)
            assert a.dtype == np.dtype(entry["dtype"]) and list(a.shape) == entry["shape"], rel
    ref = ReferenceModel.from_package(p)
    x = np.zeros((1, m["model"]["in_chans"], m["model"]["img_size"], m["model"]["img_size"]))
    logits = ref.forward(ref.quantize_input(x)).logits
    assert logits.shape == (1, m["model"]["num_classes"])
    return "loaded"


# ------------------------------------------------------------------ manifest mutations
def _paths(node, prefix=()):
    """Every JSON path of the manifest; of long name->entry maps only three entries."""
    out = [prefix]
    if isinstance(node, dict):
        items = list(node.items())
        if len(items) > 12:
            items = items[:2] + items[-1:]
        for k, v in items:
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:3]):
            out += _paths(v, (*prefix, i))
    return out


ODD_VALUES = [0, -1, 1, 2, 17, -17, 41, 1000, 2**31, 2**63, 10**30, 1e300, -0.0, 0.5, 1.5, float("nan"),
              float("inf"), "int16", "object", "|O", "<i2", "", "gelu", [], {}, [1, 2], {"a": 1}, None, True, False]  # fmt: skip
ODD_NAMES = ["../x.npy", "/etc/passwd", "weights", "weights/../manifest.json", "manifest.json", "", ".",
             "a\\b", "x\x00y", "./luts/exp.npy", "weights//cls_token.npy", "outside.txt", "../outside.txt"]  # fmt: skip
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def _get(m, path):
    for k in path:
        m = m[k]
    return m


@st.composite
def manifest_edit(draw, m, paths):
    """(new manifest text): one to three field edits (at ``paths`` of ``m``), or a broken whole text."""
    if draw(st.integers(0, 9)) == 0:
        kind = draw(st.sampled_from(["truncate", "flip", "nest", "json", "bom"]))
        text = json.dumps(m)
        if kind == "truncate":
            return text[: draw(st.integers(0, len(text) - 1))]
        if kind == "flip":
            i = draw(st.integers(0, len(text) - 1))
            return text[:i] + draw(st.characters(codec="utf-8")) + text[i + 1 :]
        if kind == "nest":
            depth = draw(st.sampled_from([50, 5000, 200000]))
            return "[" * depth + "]" * depth
        if kind == "bom":
            return "\ufeff" + text
        return json.dumps(draw(json_values))
    m = json.loads(json.dumps(m))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["set", "odd", "delete", "wrap", "nudge", "rename"] if path else ["set"]))
        try:
            parent, key = (_get(m, path[:-1]), path[-1]) if path else (None, None)
            old = _get(m, path)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed it
        if path and not isinstance(parent, (dict, list)):
            continue  # an earlier edit replaced its parent
        if not path:
            m = draw(json_values)
        elif op == "set":
            parent[key] = draw(json_values)
        elif op == "odd":
            parent[key] = draw(st.sampled_from(ODD_VALUES))
        elif op == "delete":
            del parent[key]
        elif op == "wrap":
            parent[key] = [old]
        elif op == "nudge" and type(old) in (int, float):
            parent[key] = old + draw(st.sampled_from([1, -1, 0.5, -(2 * old) - 1, old * 1000]))
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(st.sampled_from(ODD_NAMES))] = parent.pop(key)
    return json.dumps(m, allow_nan=True)


def test_mutated_manifests_give_package_error_or_a_correct_load(base):
    work, pkg, text, files = base
    manifest = json.loads(text)

    @settings(FUZZ, max_examples=CASES["manifest"])
    @given(new_text=manifest_edit(manifest, _paths(manifest)))
    def case(new_text):
        _put(pkg / "manifest.json", new_text)
        seen[_check_outcome(pkg)] += 1

    seen = collections.Counter()
    try:
        case()
    finally:
        _restore(pkg, text, files, ())
    print(f"manifest fuzz: {dict(seen)}")  # shown with pytest -s
    assert seen["refused"] > seen["loaded"] > 0, seen  # both outcomes are exercised


# ------------------------------------------------------------------ file mutations
SPARSE_HOLES = [1 << 10, 1 << 16, 8 << 30, 64 << 30, 1 << 40]  # bytes of zeros added without writing
HEADER_DESCRS = ["<i2", "<i4", "<f4", "|O", ">i2", "<U4", "|b1", "<c16", "<M8[s]"]


def _npy_header(descr: str, shape: tuple, fortran: bool) -> bytes:
    import io

    f = io.BytesIO()
    d = {"descr": descr, "fortran_order": fortran, "shape": shape}
    np.lib.format.write_array_header_1_0(f, d)
    return f.getvalue()


def _data_start(raw: bytes) -> int:
    return 10 + int.from_bytes(raw[8:10], "little") if raw[:6] == b"\x93NUMPY" else 0


@st.composite
def file_edit(draw, files):
    rel = draw(st.sampled_from(sorted(files)))
    op = draw(
        st.sampled_from(
            ["truncate", "append", "flip", "header", "sparse", "link_out", "link_in", "dir", "delete"]
        )
    )
    return (
        rel,
        op,
        draw(st.integers(0, 2**20)),
        draw(st.binary(min_size=1, max_size=64)),
        draw(
            st.tuples(
                st.sampled_from(HEADER_DESCRS),
                st.lists(st.integers(0, 2**40), max_size=3).map(tuple),
                st.booleans(),
            )
        ),
        draw(st.booleans()),
        draw(st.booleans()),
    )


def _apply_file_edit(work, pkg, files, rel, op, n, blob, header, rehash, edit_manifest_shape) -> None:
    p, raw = pkg / rel, files[rel]
    if op == "truncate":
        _put(p, raw[: n % max(len(raw), 1)])
    elif op == "append":
        _put(p, raw + blob)
    elif op == "flip":
        b = bytearray(raw)
        b[n % len(b)] ^= blob[0] or 1
        _put(p, bytes(b))
    elif op == "header":
        _put(p, _npy_header(*header) + raw[_data_start(raw) :])
    elif op == "sparse":
        with open(p, "r+b") as f:
            f.truncate(len(raw) + SPARSE_HOLES[n % len(SPARSE_HOLES)])
    elif op == "link_out":
        _put(work / "outside.bin", raw)
        p.unlink()
        p.symlink_to(work / "outside.bin")
    elif op == "link_in":
        other = sorted(files)[n % len(files)]
        p.unlink()
        p.symlink_to(os.path.relpath(pkg / other, p.parent))
    elif op == "dir":
        p.unlink()
        p.mkdir()
    else:
        p.unlink()
    if not rehash or not p.is_file():
        return
    m = json.loads((pkg / "manifest.json").read_text())
    size = p.stat().st_size
    digest = hashlib.sha256(p.read_bytes()).hexdigest() if size < 1 << 24 else "0" * 64
    m["files"][rel].update(bytes=size, sha256=digest)
    if edit_manifest_shape and op == "header" and "shape" in m["files"][rel]:
        m["files"][rel]["shape"] = list(header[1])  # the manifest agrees with the lying header
    _put(pkg / "manifest.json", json.dumps(m))


def test_mutated_files_give_package_error_or_a_correct_load(base):
    work, pkg, text, files = base

    @settings(FUZZ, max_examples=CASES["files"])
    @given(edit=file_edit(files))
    def case(edit):
        rel, op, n, blob, header, rehash, edit_shape = edit
        try:
            _apply_file_edit(work, pkg, files, rel, op, n, blob, header, rehash, edit_shape)
            seen[_check_outcome(pkg)] += 1
        finally:
            _restore(pkg, text, files, (rel,))

    seen = collections.Counter()
    case()
    print(f"file fuzz: {dict(seen)}")
    assert seen["refused"] > seen["loaded"] > 0, seen
    assert (work / "outside.txt").read_text() == "secret\n"
