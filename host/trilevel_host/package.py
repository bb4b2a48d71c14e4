"""Load and verify a model package with numpy alone (docs/model_package.md is the format).

``load_package(path)`` checks, before anything is used: the manifest parses and names a
known format version; every file it lists exists, has the listed size and sha256; every
``.npy`` file has the listed dtype and shape. Anything else raises :class:`PackageError`
with one message saying which file and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

FORMAT_NAME = "trilevel-model-package"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
MANIFEST = "manifest.json"
REQUIRED_KEYS = (
    "format",
    "format_version",
    "model",
    "selector",
    "input",
    "arithmetic",
    "luts",
    "weights",
    "activations",
    "files",
)


class PackageError(Exception):
    """A model package that cannot be used; the message says which file and why."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                return h.hexdigest()
            h.update(b)


def npy_header(path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    """dtype and shape of an .npy file from its header, without reading the data."""
    with open(path, "rb") as f:
        major, _ = np.lib.format.read_magic(f)
        if major == 1:
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    if fortran:
        raise ValueError("Fortran-ordered arrays are not used in packages")
    return np.dtype(dtype), tuple(shape)


class Package:
    """A verified package: manifest plus lazy access to its arrays."""

    def __init__(self, root: Path, manifest: dict):
        self.root = root
        self.manifest = manifest
        self._cache: dict[str, np.ndarray] = {}

    @property
    def version(self) -> int:
        return self.manifest["format_version"]

    def path(self, rel: str) -> Path:
        return self.root / rel

    def array(self, rel: str) -> np.ndarray:
        """The array in file ``rel`` (listed in the manifest), read once."""
        if rel not in self.manifest["files"]:
            raise PackageError(f"{self.root}: {rel} is not a file of this package")
        if rel not in self._cache:
            self._cache[rel] = np.load(self.root / rel, allow_pickle=False)
        return self._cache[rel]

    def tensor(self, name: str) -> np.ndarray:
        """int16 weight tensor by its name (timm state_dict key)."""
        try:
            entry = self.manifest["weights"][name]
        except KeyError:
            raise PackageError(f"{self.root}: no weight named {name!r}") from None
        return self.array(entry["file"])

    def frac_bits(self, name: str) -> int:
        for section in ("weights", "activations"):
            if name in self.manifest[section]:
                return self.manifest[section][name]["frac_bits"]
        raise PackageError(f"{self.root}: no tensor named {name!r}")

    def lut(self, name: str) -> np.ndarray:
        return self.array(self.manifest["luts"][name]["file"])

    def golden(self, name: str) -> tuple[np.ndarray, int | None]:
        """A golden vector and its frac_bits (None for index arrays)."""
        entry = self.manifest["golden"]["tensors"][name]
        return self.array(entry["file"]), entry.get("frac_bits")


def _fail(root: Path, msg: str):
    raise PackageError(f"model package {root}: {msg}")


def load_package(path: str | Path, verify_hashes: bool = True) -> Package:
    """Open the package directory ``path`` and verify it; raises :class:`PackageError`."""
    root = Path(path)
    if not root.is_dir():
        _fail(root, "is not a directory")
    mpath = root / MANIFEST
    if not mpath.is_file():
        _fail(root, f"{MANIFEST} is missing")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        _fail(root, f"{MANIFEST} is not valid JSON ({e})")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        _fail(root, f"{MANIFEST} does not describe a {FORMAT_NAME}")
    version = manifest.get("format_version")
    if version not in SUPPORTED_VERSIONS:
        _fail(root, f"unknown format version {version!r} (this reader knows {list(SUPPORTED_VERSIONS)})")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        _fail(root, f"{MANIFEST} lacks {', '.join(missing)}")
    files = manifest["files"]
    for rel, entry in files.items():
        _verify_file(root, rel, entry, verify_hashes)
    _verify_references(root, manifest)
    return Package(root, manifest)


def _verify_file(root: Path, rel: str, entry: dict, verify_hashes: bool) -> None:
    p = root / rel
    if Path(rel).is_absolute() or ".." in Path(rel).parts:
        _fail(root, f"file entry {rel!r} points outside the package")
    if not p.is_file():
        _fail(root, f"{rel} is missing")
    size = p.stat().st_size
    if size != entry["bytes"]:
        kind = "truncated" if size < entry["bytes"] else "longer than listed"
        _fail(root, f"{rel} is {kind}: {size} bytes, manifest says {entry['bytes']}")
    if verify_hashes and sha256_file(p) != entry["sha256"]:
        _fail(root, f"{rel}: sha256 mismatch (file changed after export)")
    if rel.endswith(".npy"):
        try:
            dtype, shape = npy_header(p)
        except Exception as e:  # numpy raises ValueError/EOFError for broken headers
            _fail(root, f"{rel} is not a readable .npy file ({e})")
        if "dtype" in entry and dtype != np.dtype(entry["dtype"]):
            _fail(root, f"{rel} has dtype {dtype}, manifest says {entry['dtype']}")
        if "shape" in entry and shape != tuple(entry["shape"]):
            _fail(root, f"{rel} has shape {shape}, manifest says {tuple(entry['shape'])}")


def _verify_references(root: Path, manifest: dict) -> None:
    """Every tensor entry points at a listed file whose dtype/shape agree with the entry."""
    files = manifest["files"]
    sections = [("weights", manifest["weights"]), ("luts", manifest["luts"])]
    if manifest.get("golden"):
        sections.append(("golden", manifest["golden"]["tensors"]))
    for section, entries in sections:
        for name, e in entries.items():
            rel = e.get("file")
            if rel not in files:
                _fail(root, f"{section} entry {name!r} names {rel!r}, which the file list lacks")
            for key in ("dtype", "shape"):
                if key in e and files[rel].get(key) != e[key]:
                    _fail(root, f"{section} entry {name!r}: {key} {e[key]} disagrees with {rel}")
        if section == "weights":
            for name, e in entries.items():
                if e.get("dtype") != "int16":
                    _fail(root, f"weight {name!r} is {e.get('dtype')}, must be int16")
