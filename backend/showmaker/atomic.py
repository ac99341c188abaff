"""Crash-safe file writes.

Every writer here follows one protocol: write to a temp file in the destination's directory, flush and
fsync it, ``os.replace`` it over the destination, then fsync the directory so the rename itself is durable.
A reader therefore sees either the complete previous file or the complete new one, never a torn mix.

On any failure the temp file is removed and the previous file is left untouched; a full disk (``ENOSPC`` /
``EDQUOT``) becomes a :class:`DiskFullError` that names the path and asks for free space.

All bytes go through ``os.write`` (see :class:`_FdWriter`), so one code path serves raw bytes, JSON, ``.npz``
and torch files alike.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import secrets
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np

__all__ = [
    "CorruptFileError",
    "DiskFullError",
    "atomic_save_npz",
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "fsync_dir",
    "load_torch",
]

_DISK_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class DiskFullError(OSError):
    """A write failed because the disk (or the user's quota) is full; the previous file is intact."""


class CorruptFileError(ValueError):
    """A file exists but cannot be parsed (truncated, overwritten, or not the expected format)."""


class _FdWriter(io.RawIOBase):
    """Unbuffered writer over a file descriptor that writes through ``os.write``."""

    def __init__(self, fd: int):
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def write(self, data) -> int:  # type: ignore[override]
        return os.write(self._fd, data)


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make a rename or create inside ``directory`` durable (no-op on Windows, which cannot open dirs)."""
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` atomically when the block exits without error."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, 0o666)  # 0o666 & ~umask, like a plain open()
    try:
        try:
            with io.BufferedWriter(_FdWriter(fd)) as f:
                yield f
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS:
            raise DiskFullError(
                exc.errno,
                f"{path}: could not be written, the disk is full — free space on that disk "
                f"(or choose a project directory on another one) and retry; the previous file is unchanged",
            ) from exc
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``."""
    with _atomic_file(path) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Atomically replace ``path`` with ``text`` (UTF-8 by default)."""
    atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as JSON with sorted keys and 2-space indent, ending with a newline."""
    atomic_write_text(path, json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n")


def atomic_save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Atomically write ``arrays`` as an uncompressed ``.npz`` (``np.savez``) to exactly ``path``."""
    with _atomic_file(path) as f:
        np.savez(f, **arrays)


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    """Atomically ``torch.save`` ``obj`` to ``path``; keep it to tensors and plain Python containers
    so that :func:`load_torch` (``weights_only=True``) can read it back."""
    import torch

    with _atomic_file(path) as f:
        torch.save(obj, f)


def load_torch(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """Load a file written by :func:`atomic_torch_save` with ``torch.load(weights_only=True)``.

    Raises ``FileNotFoundError`` if it is missing and :class:`CorruptFileError` if it cannot be read.
    """
    import torch

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, f"{path}: file not found", str(path))
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for bad files
        raise CorruptFileError(
            f"{path}: unreadable or corrupt torch file ({type(exc).__name__}: {exc}) — "
            f"delete it and rerun the step that wrote it"
        ) from exc
