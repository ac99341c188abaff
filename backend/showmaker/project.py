"""The project directory: one directory per reconstruction.

Layout (see ``docs/project_format.md``)::

    <project>/
      manifest.json        format version, inputs, config, one record per stage (written last, atomically)
      manifest.json.bak    the manifest as it was before the latest save
      inputs/              inputs copied in (only with ``copy_inputs=True``)
      stages/<name>/       a stage's finished outputs
      stages/<name>.tmp/   a stage's outputs while it runs (renamed to stages/<name>/ when complete)
      stages/<name>.ckpt/  a running stage's checkpoints, keyed by its cache key
      .lock                held by the process that is running the pipeline

The manifest is the only source of truth about what is done: a stage directory without a ``done`` record
is never trusted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Literal

from .atomic import atomic_write_bytes, atomic_write_json

__all__ = [
    "FORMAT_VERSION",
    "CorruptManifestError",
    "InputRecord",
    "Project",
    "ProjectBusyError",
    "ProjectError",
    "ProjectVersionError",
    "StageRecord",
    "fingerprint",
]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MANIFEST_BACKUP = "manifest.json.bak"
STAGES_DIR = "stages"
INPUTS_DIR = "inputs"
LOCK_FILE = ".lock"
_EDGE_BYTES = 1 << 20  # fingerprints hash the first and last MiB
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")

StageStatus = Literal["pending", "running", "done", "failed"]
STAGE_STATUSES = ("pending", "running", "done", "failed")


class ProjectError(Exception):
    """A project directory cannot be created, opened or used as asked."""


class ProjectVersionError(ProjectError):
    """The project was written by a newer ShowMaker."""


class CorruptManifestError(ProjectError):
    """``manifest.json`` exists but is not a valid manifest."""


class ProjectBusyError(ProjectError):
    """Another process holds the project's lock."""


def now_iso() -> str:
    """The current UTC time as ISO 8601 with a ``Z`` suffix, to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def check_name(name: str, what: str) -> str:
    """Return ``name`` if it is a safe lowercase identifier for a stage or input, else raise ``ValueError``."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"invalid {what} name {name!r}: use lowercase letters, digits, '_' and '-', starting with a letter or digit"
        )
    return name


def fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """Cheap content fingerprint of an input file or directory.

    A file: ``size``, ``mtime_ns`` and ``sha256`` of its size plus its first and last MiB.
    A directory (e.g. a folder of frames): ``size`` (total bytes), ``mtime_ns`` (newest) and ``sha256`` of the
    sorted listing of (relative path, size, mtime_ns) of every file below it.
    """
    path = Path(path)
    h = hashlib.sha256()
    if path.is_dir():
        total, newest = 0, 0
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            st = p.stat()
            total, newest = total + st.st_size, max(newest, st.st_mtime_ns)
            h.update(f"{p.relative_to(path).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return {"kind": "dir", "size": total, "mtime_ns": newest, "sha256": h.hexdigest()}
    st = path.stat()
    h.update(str(st.st_size).encode() + b"\0")
    with open(path, "rb") as f:
        h.update(f.read(_EDGE_BYTES))
        if st.st_size > _EDGE_BYTES:
            f.seek(max(_EDGE_BYTES, st.st_size - _EDGE_BYTES))
            h.update(f.read(_EDGE_BYTES))
    return {"kind": "file", "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": h.hexdigest()}


@dataclass
class InputRecord:
    """One project input. ``path`` is absolute when referenced, relative to the project when copied in."""

    path: str
    copied: bool
    kind: str
    size: int
    mtime_ns: int
    sha256: str

    def key(self) -> dict[str, Any]:
        """The part of the fingerprint that enters cache keys (content, not timestamps or location)."""
        return {"kind": self.kind, "size": self.size, "sha256": self.sha256}


@dataclass
class StageRecord:
    """What the manifest knows about one stage."""

    status: StageStatus = "pending"
    cache_key: str | None = None
    code_version: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    started: str | None = None
    finished: str | None = None
    outputs: list[str] = field(default_factory=list)
    error: str | None = None


def _record_from_dict(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise TypeError(f"{where} must be an object")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise TypeError(f"{where} has unknown fields {sorted(unknown)}")
    return cls(**data)


class Project:
    """A reconstruction project directory and its manifest. Create with :meth:`create`, open with :meth:`open`."""

    def __init__(self, root: Path, manifest: dict[str, Any]):
        """Internal: use :meth:`create` or :meth:`open`."""
        self.root = root
        self.format_version: int = manifest["format_version"]
        self.created: str = manifest["created"]
        self.config: dict[str, Any] = manifest["config"]
        self.inputs: dict[str, InputRecord] = {
            name: _record_from_dict(InputRecord, rec, f"inputs.{name}") for name, rec in manifest["inputs"].items()
        }
        self.stages: dict[str, StageRecord] = {
            name: _record_from_dict(StageRecord, rec, f"stages.{name}") for name, rec in manifest["stages"].items()
        }
        for name, rec in self.stages.items():
            if rec.status not in STAGE_STATUSES:
                raise ValueError(f"stages.{name}.status is {rec.status!r}, expected one of {STAGE_STATUSES}")

    # ----------------------------------------------------------------------------------------- creation
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        inputs: dict[str, str | os.PathLike],
        config: dict[str, Any] | None = None,
        *,
        copy_inputs: bool = False,
    ) -> Project:
        """Create a new project in ``path`` (missing or empty directory).

        ``inputs`` maps input names (e.g. ``"clip"``) to files or directories. They are referenced by absolute
        path (and fingerprinted, so a changed input is noticed) or, with ``copy_inputs=True``, copied into
        ``inputs/`` so the project is self-contained. ``config`` is any JSON-serialisable dict.
        """
        root = Path(path).absolute()
        if (root / MANIFEST).exists():
            raise ProjectError(f"{root}: already a ShowMaker project — open it with Project.open() instead")
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise ProjectError(f"{root}: exists and is not an empty directory — choose a new project directory")
        config = dict(config or {})
        try:
            json.dumps(config)
        except TypeError as exc:
            raise ValueError(f"project config must be JSON-serialisable: {exc}") from exc
        sources = {}
        for name, src in inputs.items():
            check_name(name, "input")
            src = Path(src).absolute()
            if not src.exists():
                raise FileNotFoundError(f"input {name!r}: {src} does not exist — check the path")
            sources[name] = src
        root.mkdir(parents=True, exist_ok=True)
        (root / STAGES_DIR).mkdir(exist_ok=True)
        records = {}
        for name, src in sources.items():
            target = src
            if copy_inputs:
                target = root / INPUTS_DIR / (name + src.suffix)
                target.parent.mkdir(exist_ok=True)
                if src.is_dir():
                    shutil.copytree(src, target)
                else:
                    shutil.copy2(src, target)
            fp = fingerprint(target)
            stored = target.relative_to(root).as_posix() if copy_inputs else str(src)
            records[name] = dataclasses.asdict(InputRecord(path=stored, copied=copy_inputs, **fp))
        manifest = {"format_version": FORMAT_VERSION, "created": now_iso(), "config": config,
                    "inputs": records, "stages": {}}
        project = cls(root, manifest)
        project.save()
        return project

    @classmethod
    def open(cls, path: str | os.PathLike) -> Project:
        """Open an existing project, checking its manifest's format version and structure."""
        root = Path(path).absolute()
        mpath = root / MANIFEST
        if not mpath.is_file():
            raise ProjectError(
                f"{root}: not a ShowMaker project (no {MANIFEST}) — create one with Project.create() "
                f"or `showmaker reconstruct`"
            )
        restore = (
            f"the previous manifest is kept as {MANIFEST_BACKUP}: copy it over {MANIFEST} to go back "
            f"one save, or recreate the project"
        )
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorruptManifestError(f"{mpath}: corrupt manifest (not valid JSON: {exc}) — {restore}") from exc
        version = manifest.get("format_version") if isinstance(manifest, dict) else None
        if not isinstance(version, int):
            raise CorruptManifestError(f"{mpath}: corrupt manifest (no integer format_version) — {restore}")
        if version > FORMAT_VERSION:
            raise ProjectVersionError(
                f"{root}: written by a newer ShowMaker (project format {version}; this version reads up to "
                f"{FORMAT_VERSION}) — update ShowMaker to open it"
            )
        try:
            return cls(root, manifest)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CorruptManifestError(f"{mpath}: corrupt manifest ({type(exc).__name__}: {exc}) — {restore}") from exc

    # ----------------------------------------------------------------------------------------- manifest
    def to_manifest(self) -> dict[str, Any]:
        """The manifest as a JSON-ready dict."""
        return {
            "format_version": FORMAT_VERSION,
            "created": self.created,
            "config": self.config,
            "inputs": {n: dataclasses.asdict(r) for n, r in self.inputs.items()},
            "stages": {n: dataclasses.asdict(r) for n, r in self.stages.items()},
        }

    def save(self) -> None:
        """Write the manifest atomically, first keeping the current one as ``manifest.json.bak``."""
        mpath = self.root / MANIFEST
        if mpath.exists():
            atomic_write_bytes(self.root / MANIFEST_BACKUP, mpath.read_bytes())
        atomic_write_json(mpath, self.to_manifest())

    def stage(self, name: str) -> StageRecord:
        """The record of stage ``name`` (a fresh ``pending`` one if it never ran)."""
        return self.stages.setdefault(check_name(name, "stage"), StageRecord())

    # ----------------------------------------------------------------------------------------- paths
    def stage_dir(self, name: str) -> Path:
        """``stages/<name>/``: where a stage's finished outputs live (not created here)."""
        return self.root / STAGES_DIR / check_name(name, "stage")

    def input_path(self, name: str) -> Path:
        """Where input ``name`` is read from."""
        if name not in self.inputs:
            raise KeyError(f"project has no input {name!r} (it has: {', '.join(sorted(self.inputs)) or 'none'})")
        rec = self.inputs[name]
        return self.root / rec.path if rec.copied else Path(rec.path)

    # ----------------------------------------------------------------------------------------- inputs
    def refresh_inputs(self) -> list[str]:
        """Re-fingerprint inputs whose size or mtime changed; return the names whose content changed.

        Updates the in-memory records (call :meth:`save` to persist). A missing input raises
        ``FileNotFoundError`` naming it.
        """
        changed = []
        for name, rec in self.inputs.items():
            path = self.input_path(name)
            if not path.exists():
                raise FileNotFoundError(
                    f"input {name!r}: {path} is missing — restore it there, or create a new project from its "
                    f"new location"
                )
            if rec.kind == "file":
                st = path.stat()
                if (st.st_size, st.st_mtime_ns) == (rec.size, rec.mtime_ns):
                    continue
            fp = fingerprint(path)
            if fp["sha256"] != rec.sha256 or fp["size"] != rec.size:
                changed.append(name)
            self.inputs[name] = dataclasses.replace(rec, **fp)
        return changed

    # ----------------------------------------------------------------------------------------- locking
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the project's exclusive lock (released by the OS if the process dies)."""
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                _lock_fd(fd)
            except OSError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() if hasattr(os, "pread") else "?"
                raise ProjectBusyError(
                    f"{self.root}: another ShowMaker process (pid {holder or '?'}) is working on this project — "
                    f"wait for it to finish or cancel it"
                ) from None
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock


def _lock_fd(fd: int) -> None:
    """Take a non-blocking exclusive lock on ``fd`` or raise ``OSError``."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    else:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
