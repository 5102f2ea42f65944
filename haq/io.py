"""Atomic file writes: a killed process never leaves a half-written result behind.

A write that the system refuses (disk full, file size limit, read-only file system, no
permission) is a `HaqError` of one line naming the path and the reason, and the file it was
to replace is left as it was.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from haq.errors import HaqError

_NO_SPACE = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def write_error(path: str | Path, e: OSError, fix: str | None = None) -> HaqError:
    """One line for a refused write: the path, the errno's meaning, what to do about it."""
    reason = _reason(e)
    if fix is None:
        where = Path(path).parent
        fix = (
            f"free disk space on {where} (or raise the file size limit) and run again"
            if e.errno in _NO_SPACE
            else f"make {where} writable or write elsewhere, then run again"
        )
    return HaqError(f"cannot write {path} ({reason}); {fix}")


def _reason(e: OSError) -> str:
    return os.strerror(e.errno) if e.errno else str(e)


def ensure_writable_dir(path: str | Path, fix: str) -> Path:
    """Create ``path`` (and its parents) and prove a file can be made in it, before work is
    done that would be lost: ``os.access`` says yes to root on a read-only directory, and a
    read-only mount shows only when written to. ``fix`` ends the error line; ``{dir}`` in it
    names the directory that refused (``path`` or the existing parent it was to be made in)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise HaqError(f"{path} is a file, not a directory; pass the path of a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".haq-write-check.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        where = next((p for p in (path, *path.parents) if p.is_dir()), path)
        raise HaqError(f"cannot write in {where} ({_reason(e)}); "
                       + fix.replace("{dir}", str(where))) from None  # fmt: skip
    return path


def output_file(path: str | Path, what: str, example: str) -> Path:
    """``path`` as an output file, checked before the work that fills it: a directory or a
    folder that does not exist (a typo) is a one-line error, never a new directory tree.
    ``what`` names the file ("the model"), ``example`` a file name to suggest."""
    out = Path(path)
    if out.is_dir():
        raise HaqError(
            f"{out} is a directory; pass a file name for {what}, e.g. -o {out / example}"
        )
    if not out.parent.is_dir():
        raise HaqError(
            f"folder {out.parent} does not exist; create it or write {what} elsewhere (-o)"
        )
    return out


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename over it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise write_error(path, e) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; results are for people to read
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise write_error(path, e) from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
