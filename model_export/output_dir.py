"""Where a package is written: checks on ``--output``, a temporary sibling, an atomic swap.

- Only a directory whose ``manifest.json`` says it is a model package may be replaced;
  the current directory (or one above it), links and plain files never are.
- The package is built in ``.NAME.tmp-PID-XXXX`` beside the output (made with the usual
  permissions, i.e. 0777 less the umask) and swapped into place in one step
  (``renameat2(RENAME_EXCHANGE)`` on Linux), so at every instant the output path holds
  either the old package or the new one.
- Temporary folders left by killed exports (their PID no longer runs) are removed by the
  next export to the same path; an old package set aside by the two-rename fallback is
  put back if the new one never arrived.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import secrets
import shutil
from pathlib import Path

from trilevel_host.package import FORMAT_NAME, MANIFEST


class ExportError(RuntimeError):
    pass


def is_package_dir(path: Path) -> bool:
    """True when ``path`` is a directory whose manifest.json (a plain file) names the package format."""
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


def check_output(output: str | Path) -> Path:
    """The absolute output path, after refusing one that must not be replaced (ExportError)."""
    out = Path(os.path.abspath(output))
    cwd = Path.cwd()
    if out == Path(out.anchor) or out == cwd or out in cwd.parents:
        raise ExportError(f"output {output} is the current directory or one above it; name a new folder")
    if out.is_symlink():
        raise ExportError(f"output {output} is a symbolic link; give the real path")
    if out.exists() and not is_package_dir(out):
        raise ExportError(f"output {output} exists and is not a model package; refusing to overwrite it")
    for parent in out.parents:  # the nearest existing parent must be a folder
        if parent.exists():
            if not parent.is_dir():
                raise ExportError(f"output {output} lies under {parent}, which is not a folder")
            break
    return out


def make_temporary_sibling(output: Path) -> Path:
    """A new, empty ``.NAME.tmp-PID-XXXX`` folder beside ``output`` (after cleaning stale ones)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(output)
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    os.mkdir(tmp)  # mode 0777 less the umask, like any folder the user makes
    return tmp


def replace_dir(tmp: Path, output: Path) -> None:
    """Put ``tmp`` at ``output``; an earlier package there is swapped out in one step, then deleted."""
    if not output.exists():
        os.rename(tmp, output)
        return
    if _exchange(tmp, output):  # tmp now holds the old package
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = output.with_name(f".{output.name}.old-{os.getpid()}")  # no atomic swap: two renames
    os.rename(output, old)
    os.rename(tmp, output)
    shutil.rmtree(old, ignore_errors=True)


def clean_stale(output: Path) -> None:
    """Remove temporary folders of dead exports to ``output``; restore an old package set aside."""
    prefix_tmp, prefix_old = f".{output.name}.tmp-", f".{output.name}.old-"
    try:
        siblings = list(output.parent.iterdir())
    except OSError:
        return
    for p in siblings:
        name = p.name
        if not (name.startswith(prefix_tmp) or name.startswith(prefix_old)) or p.is_symlink():
            continue
        pid = name[len(prefix_tmp if name.startswith(prefix_tmp) else prefix_old) :].split("-")[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        if name.startswith(prefix_old) and not output.exists() and is_package_dir(p):
            os.rename(p, output)  # killed between the two renames: the old package comes back
        else:
            shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2); False where the system cannot."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))
