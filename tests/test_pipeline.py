"""Stage graph: caching by key, downstream invalidation, failures, checkpoints, cancellation, kill-and-resume."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from showmaker.atomic import CorruptFileError, load_torch
from showmaker.pipeline import Cancelled, Pipeline, Stage, StageContext, StageFailed
from showmaker.project import Project

WORKER = Path(__file__).with_name("_resume_worker.py")


@dataclass
class AddConfig:
    add: int = 1


@dataclass
class FailConfig:
    fail: bool = False


def three_stages(calls: Counter, b_add: int = 1, b_fail: bool = False, a_version: str = "1") -> list[Stage]:
    """a: reads the `numbers` input and writes its sum; b: adds b_add; c: doubles. Counts calls per stage."""

    def a(ctx: StageContext) -> None:
        calls["a"] += 1
        total = sum(int(x) for x in ctx.input_path("numbers").read_text().split())
        (ctx.out_dir / "a.txt").write_text(str(total))

    def b(ctx: StageContext) -> None:
        calls["b"] += 1
        ctx.progress(0.5, "halfway")
        if b_fail:
            raise RuntimeError("b exploded on purpose")
        value = int((ctx.upstream_dir("a") / "a.txt").read_text())
        (ctx.out_dir / "b.txt").write_text(str(value + ctx.config.add))

    def c(ctx: StageContext) -> None:
        calls["c"] += 1
        value = int((ctx.upstream_dir("b") / "b.txt").read_text())
        (ctx.out_dir / "c.txt").write_text(str(2 * value))

    # Deliberately out of order: the pipeline sorts by dependencies.
    return [
        Stage("c", c, upstream=("b",)),
        Stage("b", b, AddConfig(b_add) if not b_fail else FailConfig(True), upstream=("a",)),
        Stage("a", a, inputs=("numbers",), version=a_version),
    ]


@pytest.fixture
def project(tmp_path) -> Project:
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("1 2 3")
    return Project.create(tmp_path / "proj", {"numbers": numbers}, {"note": "test"})


def read(project: Project, stage: str) -> int:
    return int((project.stage_dir(stage) / f"{stage}.txt").read_text())


def test_second_run_with_same_config_skips_every_stage(project):
    calls = Counter()
    assert Pipeline(three_stages(calls)).run(project) == {"a": "ran", "b": "ran", "c": "ran"}
    assert read(project, "c") == 2 * (6 + 1)
    reopened = Project.open(project.root)
    assert Pipeline(three_stages(calls)).run(reopened) == {"a": "cached", "b": "cached", "c": "cached"}
    assert calls == {"a": 1, "b": 1, "c": 1}
    rec = reopened.stages["b"]
    assert rec.status == "done" and rec.outputs == ["b.txt"] and rec.config == {"add": 1} and rec.error is None
    assert rec.started and rec.finished


def test_changed_setting_recomputes_that_stage_and_downstream_only(project):
    calls = Counter()
    Pipeline(three_stages(calls, b_add=1)).run(project)
    report = Pipeline(three_stages(calls, b_add=10)).run(Project.open(project.root))
    assert report == {"a": "cached", "b": "ran", "c": "ran"}
    assert calls == {"a": 1, "b": 2, "c": 2}
    assert read(project, "c") == 2 * (6 + 10)
    # c's key contains b's key: c is stale even in a later run where b itself is cached.
    assert Pipeline(three_stages(calls, b_add=20)).run(project, until="b") == {"a": "cached", "b": "ran"}
    assert Pipeline(three_stages(calls, b_add=20)).run(project) == {"a": "cached", "b": "cached", "c": "ran"}
    assert read(project, "c") == 2 * (6 + 20)


def test_changed_input_content_or_code_version_recomputes(project):
    calls = Counter()
    Pipeline(three_stages(calls)).run(project)
    os.utime(project.input_path("numbers"))  # touched, same content: still cached
    assert set(Pipeline(three_stages(calls)).run(Project.open(project.root)).values()) == {"cached"}
    project.input_path("numbers").write_text("1 2 3 4")
    assert Pipeline(three_stages(calls)).run(Project.open(project.root))["a"] == "ran"
    assert read(project, "c") == 2 * (10 + 1)
    assert Pipeline(three_stages(calls, a_version="2")).run(Project.open(project.root))["a"] == "ran"
    assert calls == {"a": 3, "b": 3, "c": 3}


def test_failing_stage_records_error_and_keeps_previous_outputs(project):
    calls = Counter()
    Pipeline(three_stages(calls)).run(project)
    with pytest.raises(StageFailed, match="b exploded on purpose") as info:
        Pipeline(three_stages(calls, b_fail=True)).run(project)
    assert info.value.stage == "b"
    rec = Project.open(project.root).stages["b"]
    assert rec.status == "failed" and rec.error == "RuntimeError: b exploded on purpose"
    assert read(project, "b") == 7 and read(project, "c") == 14  # previous results untouched
    assert not (project.root / "stages" / "b.tmp").exists()
    assert calls == {"a": 1, "b": 2, "c": 1}  # c did not run after b failed
    # Retrying with the original config recomputes b (its directory is not trusted after a failure).
    assert Pipeline(three_stages(calls)).run(Project.open(project.root)) == {"a": "cached", "b": "ran", "c": "ran"}


def test_missing_outputs_force_and_until(project):
    calls = Counter()
    assert Pipeline(three_stages(calls)).run(project, until="b") == {"a": "ran", "b": "ran"}
    assert calls["c"] == 0
    (project.stage_dir("a") / "a.txt").unlink()
    assert Pipeline(three_stages(calls)).run(project) == {"a": "ran", "b": "ran", "c": "ran"}
    assert Pipeline(three_stages(calls)).run(project, force=["b"]) == {"a": "cached", "b": "ran", "c": "ran"}
    assert calls == {"a": 2, "b": 3, "c": 2}
    plan = Pipeline(three_stages(calls)).plan(project, force=["c"])
    assert [(p.name, p.will_run, p.reason) for p in plan] == [
        ("a", False, "cached"), ("b", False, "cached"), ("c", True, "forced")]


def test_interrupted_directory_swap_is_recovered(project):
    calls = Counter()
    Pipeline(three_stages(calls)).run(project)
    # Simulate a crash between "stages/b -> b.old" and "b.tmp -> stages/b".
    os.replace(project.stage_dir("b"), project.root / "stages" / "b.old")
    project.stages["b"].status = "running"
    project.save()
    with pytest.raises(StageFailed):
        Pipeline(three_stages(calls, b_fail=True)).run(Project.open(project.root))
    assert read(project, "b") == 7
    assert not (project.root / "stages" / "b.old").exists()


def test_progress_events(project):
    events = []
    Pipeline(three_stages(Counter())).run(project, progress=lambda *e: events.append(e))
    b_events = [e for e in events if e[0] == "b"]
    assert b_events == [("b", 0.0, "starting (not run yet)"), ("b", 0.5, "halfway"), ("b", 1.0, "done")]
    events.clear()
    Pipeline(three_stages(Counter())).run(project, progress=lambda *e: events.append(e))
    assert events == [(s, 1.0, "up to date (cached)") for s in "abc"]


def test_graph_errors_name_the_problem():
    def noop(ctx):
        pass

    with pytest.raises(ValueError, match="unknown upstream stage 'missing'"):
        Pipeline([Stage("a", noop, upstream=("missing",))])
    with pytest.raises(ValueError, match="cycle"):
        Pipeline([Stage("a", noop, upstream=("b",)), Stage("b", noop, upstream=("a",))])
    with pytest.raises(ValueError, match="unique"):
        Pipeline([Stage("a", noop), Stage("a", noop)])
    with pytest.raises(TypeError, match="dataclass instance"):
        Stage("a", noop, config={"not": "a dataclass"})
    with pytest.raises(ValueError, match="invalid stage name"):
        Stage("../evil", noop)


# ------------------------------------------------------------------------------------------ checkpoints
@dataclass
class LoopConfig:
    steps: int = 6


def looping_stage(starts: list, fail_at: int | None = None, on_step=None) -> Stage:
    """Counts to config.steps, checkpointing every step; records the step it started from."""

    def run(ctx: StageContext) -> None:
        state = ctx.load_checkpoint() or {"step": 0}
        starts.append(state["step"])
        for step in range(state["step"], ctx.config.steps):
            ctx.check_cancelled()
            if step == fail_at:
                raise RuntimeError(f"failed at step {step}")
            ctx.save_checkpoint({"step": step + 1})
            if on_step:
                on_step(step + 1)
        (ctx.out_dir / "count.txt").write_text(str(ctx.config.steps))

    return Stage("loop", run, LoopConfig())


def test_cancel_leaves_stage_resumable_from_its_checkpoint(tmp_path):
    project = Project.create(tmp_path / "p", {})
    cancel, starts = threading.Event(), []
    stage = looping_stage(starts, on_step=lambda step: step == 3 and cancel.set())
    with pytest.raises(Cancelled):
        Pipeline([stage]).run(project, cancel=cancel)
    assert Project.open(project.root).stages["loop"].status == "pending"
    assert Pipeline([stage]).run(Project.open(project.root)) == {"loop": "ran"}
    assert starts == [0, 3]
    assert (project.stage_dir("loop") / "count.txt").read_text() == "6"
    assert not (project.root / "stages" / "loop.ckpt").exists()  # checkpoints are dropped once done


def test_failed_stage_resumes_only_under_the_same_key(tmp_path):
    project = Project.create(tmp_path / "p", {})
    starts = []
    with pytest.raises(StageFailed):
        Pipeline([looping_stage(starts, fail_at=4)]).run(project)
    Pipeline([looping_stage(starts)]).run(project)  # same config: resumes at step 4
    with pytest.raises(StageFailed):
        Pipeline([looping_stage(starts, fail_at=2)]).run(project, force=["loop"])
    changed = Stage("loop", looping_stage(starts).run, LoopConfig(steps=8))
    Pipeline([changed]).run(project)  # new key: the step-2 checkpoint of the old config is not used
    assert starts == [0, 4, 0, 0]
    assert (project.stage_dir("loop") / "count.txt").read_text() == "8"


def test_load_checkpoint_falls_back_to_previous_when_latest_is_corrupt(tmp_path):
    project = Project.create(tmp_path / "p", {})
    seen = []

    def run(ctx: StageContext) -> None:
        ctx.save_checkpoint({"step": 1})
        ctx.save_checkpoint({"step": 2})
        assert ctx.previous_checkpoint_path.exists()
        ctx.checkpoint_path.write_bytes(b"torn write")
        with pytest.raises(CorruptFileError):
            load_torch(ctx.checkpoint_path)
        seen.append(ctx.load_checkpoint())
        ctx.previous_checkpoint_path.write_bytes(b"also torn")
        seen.append(ctx.load_checkpoint())

    Pipeline([Stage("s", run)]).run(project)
    assert seen == [{"step": 1}, None]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_resume_after_sigkill(tmp_path, monkeypatch):
    project_dir, log = tmp_path / "proj", tmp_path / "log.txt"
    Project.create(project_dir, {})
    proc = subprocess.Popen([sys.executable, str(WORKER), str(project_dir), str(log), "0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ckpt_glob = "stages/accumulate.ckpt/*/checkpoint.pt"
    deadline = time.monotonic() + 40
    try:
        while True:
            assert proc.poll() is None, f"worker exited early:\n{proc.stdout.read().decode()}"
            assert time.monotonic() < deadline, "worker never checkpointed 3 steps"
            ckpts = list(project_dir.glob(ckpt_glob))
            try:
                if ckpts and load_torch(ckpts[0])["step"] >= 3:
                    break
            except FileNotFoundError:  # between rotating to .prev and writing the new one
                pass
            time.sleep(0.02)
    finally:
        proc.kill()  # SIGKILL: no cleanup handlers run
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    killed = Project.open(project_dir)
    assert killed.stages["prep"].status == "done"
    assert killed.stages["accumulate"].status == "running"

    spec = importlib.util.spec_from_file_location("_resume_worker", WORKER)
    worker = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, worker)  # dataclasses look their module up while executing
    spec.loader.exec_module(worker)
    report = worker.build(log, 0.0).run(Project.open(project_dir))

    assert report == {"prep": "cached", "accumulate": "ran", "report": "ran"}
    lines = log.read_text().split()
    assert lines.count("prep") == 1
    starts = [int(line.split()[-1]) for line in log.read_text().splitlines() if line.startswith("accumulate")]
    assert starts[0] == 0 and len(starts) == 2 and 3 <= starts[1] < worker.N_STEPS
    result = json.loads((project_dir / "stages" / "report" / "report.json").read_text())
    assert result == {"total": worker.EXPECTED_TOTAL}
    assert not list(project_dir.glob("stages/*.tmp")) and not list(project_dir.glob("stages/*.ckpt"))
