"""A 3-stage pipeline that test_pipeline.py kills mid-run (as a subprocess) and then resumes in-process.

Usage: ``python tests/_resume_worker.py PROJECT_DIR LOG_FILE STEP_DELAY_S``

``prep`` writes the numbers 0..N_STEPS-1; ``accumulate`` sums their squares one step at a time, checkpointing
after every step (and sleeping ``STEP_DELAY_S`` so the test can kill it mid-loop); ``report`` writes the total.
Each stage appends a line to LOG_FILE when it starts, so the test can tell what ran and where it resumed.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from showmaker.pipeline import Pipeline, Stage, StageContext
from showmaker.project import Project

N_STEPS = 40
EXPECTED_TOTAL = sum(i * i for i in range(N_STEPS))


@dataclass
class AccumulateConfig:
    power: int = 2


def build(log: Path, step_delay_s: float) -> Pipeline:
    """The pipeline; ``step_delay_s`` only slows it down and is deliberately not part of any config."""

    def note(line: str) -> None:
        with open(log, "a") as f:
            f.write(line + "\n")

    def prep(ctx: StageContext) -> None:
        note("prep")
        (ctx.out_dir / "numbers.json").write_text(json.dumps(list(range(N_STEPS))))

    def accumulate(ctx: StageContext) -> None:
        numbers = json.loads((ctx.upstream_dir("prep") / "numbers.json").read_text())
        state = ctx.load_checkpoint() or {"step": 0, "total": torch.tensor(0, dtype=torch.int64)}
        note(f"accumulate start {state['step']}")
        for step in range(state["step"], len(numbers)):
            ctx.check_cancelled()
            state = {"step": step + 1, "total": state["total"] + numbers[step] ** ctx.config.power}
            ctx.save_checkpoint(state)
            ctx.progress(state["step"] / len(numbers), f"step {state['step']}")
            time.sleep(step_delay_s)
        (ctx.out_dir / "total.json").write_text(json.dumps(int(state["total"])))

    def report(ctx: StageContext) -> None:
        note("report")
        total = json.loads((ctx.upstream_dir("accumulate") / "total.json").read_text())
        (ctx.out_dir / "report.json").write_text(json.dumps({"total": total}))

    return Pipeline([
        Stage("prep", prep),
        Stage("accumulate", accumulate, AccumulateConfig(), upstream=("prep",)),
        Stage("report", report, upstream=("accumulate",)),
    ])


if __name__ == "__main__":
    project_dir, log_file, delay = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
    build(log_file, delay).run(Project.open(project_dir))
