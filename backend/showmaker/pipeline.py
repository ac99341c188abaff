"""A small stage graph with content-keyed caching, crash-safe outputs, checkpoints and cancellation.

A :class:`Stage` names its upstream stages and project inputs, carries a config dataclass and a code version,
and has a ``run(ctx)`` callable that writes its outputs into ``ctx.out_dir``. Its cache key hashes all of
that plus the upstream stages' keys, so a changed setting, input or code version recomputes the stage and
everything downstream of it, and nothing else::

    pipe = Pipeline([Stage("ingest", run_ingest, IngestConfig(), inputs=("clip",)),
                     Stage("shots", run_shots, ShotsConfig(), upstream=("ingest",))])
    pipe.run(Project.open("my_project"), progress=lambda stage, frac, msg: print(stage, frac, msg))

See ``docs/project_format.md`` for the on-disk protocol (temp dirs, manifest records, checkpoints).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .atomic import CorruptFileError, atomic_torch_save, fsync_dir, load_torch
from .project import Project, check_name, now_iso

__all__ = [
    "Cancelled",
    "Pipeline",
    "PlannedStage",
    "ProgressCallback",
    "Stage",
    "StageContext",
    "StageFailed",
    "cache_key",
]

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, float, str], None]
"""``progress(stage_name, fraction_0_to_1, message)``."""

CancelHook = threading.Event | Callable[[], bool]


class Cancelled(Exception):
    """The run was cancelled; the interrupted stage is left ``pending`` with its checkpoints, ready to resume."""


class StageFailed(Exception):
    """A stage raised; its record says ``failed`` with the error, and its previous outputs are untouched."""

    def __init__(self, stage: str, error: BaseException):
        super().__init__(f"stage {stage!r} failed: {type(error).__name__}: {error}")
        self.stage = stage
        self.error = error


@dataclass(frozen=True)
class Stage:
    """One node of the pipeline.

    ``run(ctx)`` writes into ``ctx.out_dir``. ``config`` is a dataclass instance (or ``None``) whose
    ``dataclasses.asdict`` form must be JSON-serialisable. Bump ``version`` whenever a code change alters the
    stage's results, so cached results made by the old code are recomputed. ``inputs`` names the project
    inputs the stage reads (their fingerprints enter the key).
    """

    name: str
    run: Callable[[StageContext], None]
    config: Any = None
    upstream: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    version: str = "1"

    def __post_init__(self):
        check_name(self.name, "stage")
        if self.config is not None and not (
            dataclasses.is_dataclass(self.config) and not isinstance(self.config, type)
        ):
            raise TypeError(f"stage {self.name!r}: config must be a dataclass instance or None, got {self.config!r}")
        object.__setattr__(self, "upstream", tuple(self.upstream))
        object.__setattr__(self, "inputs", tuple(self.inputs))

    def config_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict (what the manifest records and the cache key hashes)."""
        if self.config is None:
            return {}
        cfg = dataclasses.asdict(self.config)
        try:
            return json.loads(json.dumps(cfg, sort_keys=True))
        except TypeError as exc:
            raise TypeError(
                f"stage {self.name!r}: config field is not JSON-serialisable ({exc}) — use str/int/float/bool/"
                f"list/dict fields (store paths as str)"
            ) from exc


def cache_key(stage: Stage, upstream_keys: dict[str, str], input_keys: dict[str, dict[str, Any]]) -> str:
    """sha256 over the stage name, code version, config, upstream keys and input fingerprints."""
    payload = {
        "stage": stage.name,
        "version": stage.version,
        "config": stage.config_dict(),
        "upstream": upstream_keys,
        "inputs": input_keys,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass
class StageContext:
    """What a running stage sees. Write outputs only into ``out_dir``; read upstream results via
    :meth:`upstream_dir` and project inputs via :meth:`input_path`."""

    stage: str
    config: Any
    project: Project
    out_dir: Path
    cache_key: str
    checkpoint_path: Path
    _progress: ProgressCallback | None = field(default=None, repr=False)
    _cancelled: Callable[[], bool] | None = field(default=None, repr=False)

    def upstream_dir(self, name: str) -> Path:
        """The finished output directory of upstream stage ``name``."""
        return self.project.stage_dir(name)

    def input_path(self, name: str) -> Path:
        """The path of project input ``name``."""
        return self.project.input_path(name)

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress within this stage (``fraction`` in 0..1)."""
        if self._progress is not None:
            self._progress(self.stage, min(max(float(fraction), 0.0), 1.0), message)

    def check_cancelled(self) -> None:
        """Raise :class:`Cancelled` if cancellation was requested. Call it often (e.g. every step)."""
        if self._cancelled is not None and self._cancelled():
            raise Cancelled(f"stage {self.stage!r} cancelled")

    @property
    def previous_checkpoint_path(self) -> Path:
        """The checkpoint before the latest one (the fallback if the latest is corrupt)."""
        return self.checkpoint_path.with_name("checkpoint.prev.pt")

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Atomically save ``state`` (tensors and plain Python values), keeping the previous one as ``.prev``."""
        self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        if self.checkpoint_path.exists():
            os.replace(self.checkpoint_path, self.previous_checkpoint_path)
        atomic_torch_save(self.checkpoint_path, state)

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The latest readable checkpoint for this exact cache key, or ``None`` to start from scratch."""
        for path in (self.checkpoint_path, self.previous_checkpoint_path):
            try:
                state = load_torch(path)
            except FileNotFoundError:
                continue
            except CorruptFileError as exc:
                log.warning("%s; trying an older checkpoint", exc)
                continue
            if isinstance(state, dict):
                return state
            log.warning("%s: not a checkpoint dict; trying an older checkpoint", path)
        return None


@dataclass(frozen=True)
class PlannedStage:
    """One line of :meth:`Pipeline.plan`: the stage, its cache key, whether it will run, and why."""

    name: str
    cache_key: str
    will_run: bool
    reason: str


class Pipeline:
    """A validated stage graph. Stages may be given in any order; they run in dependency order."""

    def __init__(self, stages: Sequence[Stage]):
        by_name: dict[str, Stage] = {}
        for s in stages:
            if s.name in by_name:
                raise ValueError(f"two stages are named {s.name!r} — stage names must be unique")
            by_name[s.name] = s
        for s in stages:
            for up in s.upstream:
                if up not in by_name:
                    raise ValueError(f"stage {s.name!r} lists unknown upstream stage {up!r}")
        self.stages: dict[str, Stage] = {}
        visiting: set[str] = set()

        def visit(name: str) -> None:
            if name in self.stages:
                return
            if name in visiting:
                raise ValueError(f"stage graph has a cycle through {name!r}")
            visiting.add(name)
            for up in by_name[name].upstream:
                visit(up)
            visiting.discard(name)
            self.stages[name] = by_name[name]

        for s in stages:
            visit(s.name)

    def _selected(self, until: str | None) -> list[Stage]:
        if until is None:
            return list(self.stages.values())
        if until not in self.stages:
            raise ValueError(f"until={until!r} is not a stage (stages: {', '.join(self.stages)})")
        needed, todo = set(), [until]
        while todo:
            name = todo.pop()
            if name not in needed:
                needed.add(name)
                todo.extend(self.stages[name].upstream)
        return [s for s in self.stages.values() if s.name in needed]

    def plan(self, project: Project, until: str | None = None, force: Iterable[str] = ()) -> list[PlannedStage]:
        """Decide, without running anything, which stages would run and why.

        A stage runs if it is forced, if an upstream stage runs, or unless its record is ``done`` with the
        same cache key and all its recorded outputs exist. Uses the inputs' current fingerprints as stored in
        the project (``Pipeline.run`` refreshes them first).
        """
        force = set(force)
        unknown = force - set(self.stages)
        if unknown:
            raise ValueError(f"force names unknown stages {sorted(unknown)} (stages: {', '.join(self.stages)})")
        keys: dict[str, str] = {}
        running: set[str] = set()
        plan = []
        for s in self._selected(until):
            for name in s.inputs:
                if name not in project.inputs:
                    raise ValueError(
                        f"stage {s.name!r} reads input {name!r} but the project has none "
                        f"(inputs: {', '.join(sorted(project.inputs)) or 'none'}) — add it when creating the project"
                    )
            key = cache_key(s, {u: keys[u] for u in s.upstream}, {n: project.inputs[n].key() for n in s.inputs})
            keys[s.name] = key
            rec = project.stages.get(s.name)
            if s.name in force:
                reason = "forced"
            elif rec is None or rec.status == "pending":
                reason = "not run yet"
            elif rec.status == "running":
                reason = "interrupted: resuming"
            elif rec.status == "failed":
                reason = "failed last time: retrying"
            elif any(u in running for u in s.upstream):
                reason = "upstream stage reran"
            elif rec.cache_key != key:
                reason = "config, inputs or code changed"
            elif not all((project.stage_dir(s.name) / out).exists() for out in rec.outputs):
                reason = "outputs missing"
            else:
                plan.append(PlannedStage(s.name, key, False, "cached"))
                continue
            running.add(s.name)
            plan.append(PlannedStage(s.name, key, True, reason))
        return plan

    def run(
        self,
        project: Project,
        until: str | None = None,
        force: Iterable[str] = (),
        progress: ProgressCallback | None = None,
        cancel: CancelHook | None = None,
    ) -> dict[str, str]:
        """Bring the stages (up to and including ``until``) up to date; return ``{stage: "ran" | "cached"}``.

        ``force`` reruns the named stages (and so everything downstream). ``cancel`` is a ``threading.Event``
        or a callable returning True to cancel; the stage in progress raises :class:`Cancelled` at its next
        ``ctx.check_cancelled()``, stays resumable, and ``Cancelled`` propagates. A failing stage raises
        :class:`StageFailed` after recording the error; later stages do not run.
        """
        cancelled = cancel.is_set if isinstance(cancel, threading.Event) else cancel
        report = {}
        with project.lock():
            if project.refresh_inputs():
                project.save()
            for step in self.plan(project, until, force):
                if cancelled is not None and cancelled():
                    raise Cancelled(f"cancelled before stage {step.name!r}")
                if not step.will_run:
                    _recover_swap(project.stage_dir(step.name))
                    report[step.name] = "cached"
                    if progress is not None:
                        progress(step.name, 1.0, "up to date (cached)")
                    continue
                self._run_stage(project, self.stages[step.name], step, progress, cancelled)
                report[step.name] = "ran"
        return report

    def _run_stage(
        self,
        project: Project,
        stage: Stage,
        step: PlannedStage,
        progress: ProgressCallback | None,
        cancelled: Callable[[], bool] | None,
    ) -> None:
        final = project.stage_dir(stage.name)
        tmp, old, ckpt_root = (final.with_name(final.name + sfx) for sfx in (".tmp", ".old", ".ckpt"))
        _recover_swap(final)
        rec = project.stage(stage.name)
        rec.status, rec.cache_key, rec.code_version = "running", step.cache_key, stage.version
        rec.config, rec.started, rec.finished, rec.error = stage.config_dict(), now_iso(), None, None
        project.save()

        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        ckpt_dir = ckpt_root / step.cache_key
        if ckpt_root.is_dir():  # checkpoints made under another key would resume a different computation
            for stale in ckpt_root.iterdir():
                if stale != ckpt_dir:
                    shutil.rmtree(stale, ignore_errors=True)
        ctx = StageContext(stage.name, stage.config, project, tmp, step.cache_key, ckpt_dir / "checkpoint.pt",
                           progress, cancelled)
        ctx.progress(0.0, f"starting ({step.reason})")
        try:
            stage.run(ctx)
        except Cancelled:
            rec.status, rec.finished = "pending", now_iso()
            project.save()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        except Exception as exc:
            rec.status, rec.finished, rec.error = "failed", now_iso(), f"{type(exc).__name__}: {exc}"
            project.save()
            shutil.rmtree(tmp, ignore_errors=True)
            raise StageFailed(stage.name, exc) from exc

        # Swap the finished temp dir in; the previous result stays in place until this point.
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        fsync_dir(final.parent)  # the renames must be durable before the manifest says "done"
        rec.status, rec.finished, rec.outputs = "done", now_iso(), sorted(p.name for p in final.iterdir())
        project.save()
        shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(ckpt_root, ignore_errors=True)
        ctx.progress(1.0, "done")


def _recover_swap(final: Path) -> None:
    """Undo a swap that a crash interrupted: ``<name>.old`` without ``<name>`` is the last good result."""
    old = final.with_name(final.name + ".old")
    if old.exists():
        if final.exists():
            shutil.rmtree(old)
        else:
            os.replace(old, final)
