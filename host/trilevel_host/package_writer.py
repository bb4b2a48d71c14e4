"""Write a loaded package back out with new int16 weights (after training on the engine), numpy only.

:func:`write_trained_package` copies every file of a verified :class:`~.package.Package` except
the weights, the golden vectors and the ONNX file, saves the new weights in the same files and
formats (``frac_bits`` unchanged: the engine's SGD keeps each weight's format), recomputes each
file's bytes and sha256 and writes a new manifest. Golden vectors and the float ONNX described
the old weights, so their sections become null and ``producer.notes`` says why.

The int32 master copies are not written: format version 1 has no place for them, and a
loaded package starts training from ``weight << 16`` (the sub-LSB part of the last steps is
dropped, less than half an LSB of each weight).

Atomic like the exporter (model_export/output_dir.py): everything goes into a temporary
sibling ``.NAME.tmp-PID-XXXX`` that is renamed into place at the end, so an interrupted or
failed write never leaves half a package; an existing output is replaced only when it is a
model package, never the source package itself, a link, a plain file or the current directory.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
import shutil
from pathlib import Path

import numpy as np

from .package import FORMAT_NAME, MANIFEST, Package, sha256_file

NOTES = (
    "weights trained on the engine (per-sample SGD); golden vectors and the float ONNX of the "
    "source package described its old weights and were dropped"
)


class PackageWriteError(RuntimeError):
    """An output path that must not be written, or weights that do not fit the package."""


def _is_package_dir(path: Path) -> bool:
    manifest = path / MANIFEST
    if path.is_symlink() or not path.is_dir() or manifest.is_symlink() or not manifest.is_file():
        return False
    try:
        if manifest.stat().st_size > 64 << 20:
            return False
        m = json.loads(manifest.read_bytes())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(m, dict) and m.get("format") == FORMAT_NAME


def check_output(output: str | Path, source: Path) -> Path:
    """The absolute output path after refusing one that must not be replaced (PackageWriteError)."""
    out = Path(os.path.abspath(output))
    cwd = Path.cwd()
    if out == Path(out.anchor) or out == cwd or out in cwd.parents:
        raise PackageWriteError(
            f"output {output} is the current directory or one above it; name a new folder"
        )
    if out.is_symlink():
        raise PackageWriteError(f"output {output} is a symbolic link; give the real path")
    if out.exists() and not _is_package_dir(out):
        raise PackageWriteError(
            f"output {output} exists and is not a model package; refusing to overwrite it"
        )
    if out.exists() and os.path.samefile(out, source):
        raise PackageWriteError(f"output {output} is the source package; write the trained one elsewhere")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise PackageWriteError(f"output {output} lies under {parent}, which is not a folder")
            break
    return out


def _check_weights(pkg: Package, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The new weights as int16 arrays of the package's shapes, one per package weight."""
    names = set(pkg.manifest["weights"])
    if set(weights) != names:
        missing, extra = sorted(names - set(weights)), sorted(set(weights) - names)
        raise PackageWriteError(f"new weights do not match the package: missing {missing}, extra {extra}")
    out = {}
    for key, entry in pkg.manifest["weights"].items():
        a = np.asarray(weights[key])
        if not np.issubdtype(a.dtype, np.integer) or a.size != int(np.prod(entry["shape"])):
            raise PackageWriteError(
                f"weight {key}: {a.dtype} array of {a.size} values, need int16 {entry['shape']}"
            )
        if a.size and (a.min() < -32768 or a.max() > 32767):
            raise PackageWriteError(f"weight {key}: values outside int16")
        out[key] = np.ascontiguousarray(a.reshape(entry["shape"]).astype("<i2"))
    return out


def _copy_plain(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb", opener=lambda p, fl: os.open(p, fl | os.O_NOFOLLOW)) as f, open(dst, "wb") as g:
        shutil.copyfileobj(f, g)


def _build(pkg: Package, weights: dict[str, np.ndarray], root: Path, tool: str, notes: str) -> None:
    m = json.loads(json.dumps(pkg.manifest))  # a deep copy
    weight_files = {e["file"] for e in m["weights"].values()}
    golden_files = {e["file"] for e in (m.get("golden") or {}).get("tensors", {}).values()}
    onnx_file = (m.get("onnx") or {}).get("file")
    files = {}
    for rel, entry in m["files"].items():
        if rel in golden_files or rel == onnx_file:
            continue
        if rel not in weight_files:
            _copy_plain(pkg.path(rel), root / rel)
        files[rel] = dict(entry)
    for key, e in m["weights"].items():
        p = root / e["file"]
        p.parent.mkdir(parents=True, exist_ok=True)
        np.save(p, weights[key], allow_pickle=False)
        e["max_abs"] = float(
            np.abs(weights[key].astype(np.float64)).max(initial=0.0) * 2.0 ** -e["frac_bits"]
        )
    for rel, entry in files.items():
        entry["bytes"] = (root / rel).stat().st_size
        entry["sha256"] = sha256_file(root / rel)
    m["files"] = dict(sorted(files.items()))
    m["golden"] = None
    m["onnx"] = None
    source = m.get("producer") if isinstance(m.get("producer"), dict) else {}
    m["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    m["producer"] = {"tool": tool, "source_producer": source, "notes": notes}
    with open(root / MANIFEST, "w") as f:
        f.write(json.dumps(m, indent=1) + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_trained_package(
    pkg: Package, weights: dict[str, np.ndarray], output: str | Path, tool: str = "trilevel-host train",
    notes: str = NOTES,
) -> Path:  # fmt: skip
    """Write ``pkg`` with ``weights`` (timm key -> int16 array, package shape or any same-size
    shape, e.g. the engine's 2-D layout) to ``output`` atomically; returns the output path."""
    out = check_output(output, pkg.root)
    new = _check_weights(pkg, weights)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    os.mkdir(tmp)
    try:
        _build(pkg, new, tmp, tool, notes)
        _replace_dir(tmp, out)
    except BaseException:  # including KeyboardInterrupt: the output keeps what it had
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _replace_dir(tmp: Path, output: Path) -> None:
    """Put ``tmp`` at ``output``; an earlier package there is set aside, then deleted."""
    if not output.exists():
        os.rename(tmp, output)
        return
    old = output.with_name(f".{output.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
    os.rename(output, old)
    try:
        os.rename(tmp, output)
    except BaseException:
        os.rename(old, output)
        raise
    shutil.rmtree(old, ignore_errors=True)
