"""Load and verify a model package with numpy alone (docs/model_package.md is the format).

A package comes from outside and is untrusted. ``load_package(path)`` checks, before
anything is used: the manifest is a plain file of JSON that names a known format version,
and every field a reader uses has the right type and range and agrees with the others
(:mod:`.manifest_schema`); every file it lists is a regular file inside the package (no
symbolic links on the way), has the listed size and sha256; every ``.npy`` file has the
listed dtype and shape and exactly the data its header announces. Anything else raises
:class:`PackageError` with one message saying which file or field and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import numpy as np

from .manifest_schema import ALLOWED_DTYPES, SchemaError, check_manifest, data_bytes

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
MAX_MANIFEST_BYTES = 64 << 20
# Refused before anything is hashed; DeiT-B's package (weights, float ONNX) is about 0.5 GiB.
MAX_PACKAGE_BYTES = 4 << 30


class PackageError(Exception):
    """A model package that cannot be used; the message says which file and why."""


def _open_plain(path: Path):
    """A binary file object for ``path``, refusing a symbolic link or anything but a regular file."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        f.close()
        raise IsADirectoryError(f"{path} is not a regular file")
    return f


def sha256_file(path: Path) -> str:
    with _open_plain(path) as f:
        return _sha256(f)


def _sha256(f, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    while b := f.read(chunk):
        h.update(b)
    return h.hexdigest()


def npy_header(path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    """dtype and shape of an .npy file from its header, without reading the data.

    Raises ValueError when the header is not a plain C-order array of numbers or when the
    file does not hold exactly the data the header announces (so no reader allocates for a
    shape the file cannot fill).
    """
    with _open_plain(path) as f:
        return _npy_header(f)


def _npy_header(f) -> tuple[np.dtype, tuple[int, ...]]:
    major, _ = np.lib.format.read_magic(f)
    if major == 1:
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif major == 2:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f"npy format version {major} (packages use 1.0)")
    data_start = f.tell()
    size = os.fstat(f.fileno()).st_size
    dtype = np.dtype(dtype)
    if fortran:
        raise ValueError("Fortran-ordered arrays are not used in packages")
    if dtype.name not in ALLOWED_DTYPES or dtype.byteorder == ">":
        raise ValueError(f"dtype {dtype.str} is not a plain little-endian number")
    want = data_bytes(dtype.name, list(shape))
    if size - data_start != want:
        raise ValueError(
            f"header announces {want} data bytes for shape {tuple(shape)}, file has {size - data_start}"
        )
    return dtype, tuple(shape)


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
            try:
                with _open_plain(self.root / rel) as f:
                    self._cache[rel] = np.load(f, allow_pickle=False)
            except (OSError, ValueError) as e:  # changed on disk since it was verified
                raise PackageError(f"{self.root}: {rel} cannot be read ({e})") from None
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


def load_package(path: str | Path, verify_hashes: bool = True, max_bytes: int = MAX_PACKAGE_BYTES) -> Package:
    """Open the package directory ``path`` and verify it; raises :class:`PackageError`.

    max_bytes: the most the listed files may hold together (checked before hashing).
    """
    root = Path(path)
    if not root.is_dir():
        _fail(root, "is not a directory")
    manifest = _read_manifest(root)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        _fail(root, f"{MANIFEST} does not describe a {FORMAT_NAME}")
    version = manifest.get("format_version")
    if type(version) is not int or version not in SUPPORTED_VERSIONS:
        _fail(root, f"unknown format version {version!r} (this reader knows {list(SUPPORTED_VERSIONS)})")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        _fail(root, f"{MANIFEST} lacks {', '.join(missing)}")
    try:
        check_manifest(manifest)
    except SchemaError as e:
        _fail(root, f"{MANIFEST}: {e}")
    files = manifest["files"]
    total = sum(e["bytes"] for e in files.values())
    if total > max_bytes:
        _fail(root, f"lists {total} bytes of files, more than this reader's limit of {max_bytes}")
    for rel, entry in files.items():  # cheap checks of every file before any is hashed
        _check_size(root, rel, entry)
    for rel, entry in files.items():
        _verify_content(root, rel, entry, verify_hashes)
    _verify_references(root, manifest)
    return Package(root, manifest)


def _read_manifest(root: Path):
    try:
        st = os.lstat(root / MANIFEST)
    except FileNotFoundError:
        _fail(root, f"{MANIFEST} is missing")
    except OSError as e:
        _fail(root, f"{MANIFEST} cannot be read ({e.strerror})")
    if not stat.S_ISREG(st.st_mode):
        _fail(root, f"{MANIFEST} is not a regular file (a link or a folder)")
    if st.st_size > MAX_MANIFEST_BYTES:
        _fail(root, f"{MANIFEST} is {st.st_size} bytes, more than {MAX_MANIFEST_BYTES}")
    try:
        with _open_plain(root / MANIFEST) as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constant, object_pairs_hook=_no_duplicates)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        _fail(root, f"{MANIFEST} is not valid JSON ({type(e).__name__}: {str(e)[:200]})")


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _no_duplicates(pairs: list) -> dict:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise ValueError("an object repeats a key")
    return d


def _parts(root: Path, rel: str) -> list[str]:
    """The path components of listed file ``rel``; refuses names that leave the package."""
    parts = [x for x in rel.split("/") if x not in ("", ".")]
    if not parts or rel.startswith("/") or "\0" in rel or "\\" in rel or ".." in parts:
        _fail(root, f"file entry {rel!r} points outside the package")
    return parts


def _check_size(root: Path, rel: str, entry: dict) -> None:
    """The file is a regular file reached without symbolic links, of the listed size."""
    parts = _parts(root, rel)
    p = str(root)
    for i, part in enumerate(parts):
        p = os.path.join(p, part)
        try:
            st = os.lstat(p)
        except (FileNotFoundError, NotADirectoryError):
            _fail(root, f"{rel} is missing")
        except OSError as e:
            _fail(root, f"{rel} cannot be read ({e.strerror})")
        if stat.S_ISLNK(st.st_mode):
            _fail(
                root, f"{rel}: {'/'.join(parts[: i + 1])} is a symbolic link; packages hold plain files only"
            )
        if i < len(parts) - 1 and not stat.S_ISDIR(st.st_mode):
            _fail(root, f"{rel} is missing")
    if not stat.S_ISREG(st.st_mode):
        _fail(root, f"{rel} is not a regular file")
    if st.st_size != entry["bytes"]:
        kind = "truncated" if st.st_size < entry["bytes"] else "longer than listed"
        _fail(root, f"{rel} is {kind}: {st.st_size} bytes, manifest says {entry['bytes']}")


def _verify_content(root: Path, rel: str, entry: dict, verify_hashes: bool) -> None:
    """For .npy files the header against the file and the manifest (cheap, so first), then sha256."""
    try:
        f = _open_plain(os.path.join(root, *_parts(root, rel)))
    except OSError as e:
        _fail(root, f"{rel} cannot be read ({e.strerror or e})")
    with f:
        if rel.endswith(".npy"):
            try:
                dtype, shape = _npy_header(f)
            except Exception as e:  # numpy's header parser raises ValueError, SyntaxError, TokenError, ...
                _fail(root, f"{rel} is not a usable .npy file ({str(e)[:200]})")
            if "dtype" in entry and dtype != np.dtype(entry["dtype"]):
                _fail(root, f"{rel} has dtype {dtype}, manifest says {entry['dtype']}")
            if "shape" in entry and shape != tuple(entry["shape"]):
                _fail(root, f"{rel} has shape {shape}, manifest says {tuple(entry['shape'])}")
        elif "dtype" in entry or "shape" in entry:
            _fail(root, f"{rel} is listed with a dtype or shape but is not an .npy file")
        if not verify_hashes:
            return
        try:
            f.seek(0)
            digest = _sha256(f)
        except OSError as e:
            _fail(root, f"{rel} cannot be read ({e.strerror or e})")
        if digest != entry["sha256"]:
            _fail(root, f"{rel}: sha256 mismatch (file changed after export)")


def _verify_references(root: Path, manifest: dict) -> None:
    """Every array entry points at a listed .npy file whose dtype/shape agree with the entry."""
    files = manifest["files"]
    sections = [("weights", manifest["weights"]), ("luts", manifest["luts"])]
    if manifest.get("golden"):
        sections.append(("golden", manifest["golden"]["tensors"]))
    if manifest.get("example_subset"):
        sections.append(("example_subset", {"example_subset": manifest["example_subset"]}))
    for section, entries in sections:
        for name, e in entries.items():
            rel = e["file"]
            if rel not in files:
                _fail(root, f"{section} entry {name!r} names {rel!r}, which the file list lacks")
            for key in ("dtype", "shape"):
                if files[rel].get(key) != e[key]:
                    _fail(root, f"{section} entry {name!r}: {key} {e[key]} disagrees with {rel}")
    onnx = manifest.get("onnx")
    if onnx and onnx["file"] not in files:
        _fail(root, f"onnx entry names {onnx['file']!r}, which the file list lacks")
