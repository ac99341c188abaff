"""The ``showmaker`` command line: demo | synth | reconstruct | eval.

    showmaker demo                       # the embedded synthetic clip, end to end, with a report
    showmaker synth [--spec FILE]        # (re)generate a synthetic clip with ground truth
    showmaker reconstruct CLIP -o PROJ   # run the pipeline on a clip into a project directory
    showmaker eval PROJ                  # score a project against its ground truth
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm


def _progress_printer():
    """A progress callback drawing one tqdm bar per stage."""
    bars: dict[str, tqdm] = {}

    def progress(stage: str, fraction: float, message: str):
        bar = bars.get(stage)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[stage] = tqdm(total=1000, desc=f"{stage:>8}", leave=True, bar_format="{desc} {bar} {percentage:3.0f}% {postfix}")
        bar.n = int(fraction * 1000)
        bar.set_postfix_str(message[:60], refresh=True)

    return progress, bars


def _run(project_dir: Path, clip: Path, ground_truth: Path | None, preset: str, estimators: str, depth: str,
         force: list[str]) -> "Project":  # noqa: F821
    from .project import Project
    from .reconstruct import DepthConfig, EstimatorConfig, StageConfig, build_pipeline, check_inputs
    from .stage.train import StageTrainConfig

    inputs = {"clip": clip}
    if ground_truth is not None:
        inputs["ground_truth"] = ground_truth
    if (project_dir / "manifest.json").exists():
        project = Project.open(project_dir)
        for name, path in inputs.items():
            known = project.inputs.get(name)
            if known is None or Path(project.input_path(name)).resolve() != path.resolve():
                raise SystemExit(f"{project_dir} was made from other inputs ({name}: "
                                 f"{known.path if known else 'none'}); choose a new project directory")
    else:
        project = Project.create(project_dir, inputs, {"preset": preset})
    est = EstimatorConfig(estimators=estimators)
    check_inputs(project, est)
    pipe = build_pipeline(estimators=est, stage=StageConfig(preset=preset, train=StageTrainConfig.preset(preset)),
                          depth=DepthConfig(mode=depth, estimators=est))
    progress, bars = _progress_printer()
    try:
        pipe.run(project, force=force, progress=progress)
    finally:
        for bar in bars.values():
            bar.close()
    return Project.open(project_dir)


def _evaluate(project_dir: Path) -> dict:
    from .reconstruct import evaluate_project

    return evaluate_project(project_dir)


def cmd_demo(args) -> int:
    from .synth import default_spec, generate_clip

    t0 = time.time()
    print("ShowMaker demo: the embedded synthetic clip (3 shots, 2 actors, ground truth), end to end.")
    clip_dir = generate_clip(default_spec())
    print(f"[1/3] synthetic clip ready in {time.time() - t0:.1f} s: {clip_dir}")
    out = Path(args.out)
    t1 = time.time()
    _run(out, clip_dir / "clip.mp4", clip_dir, args.preset, "oracle", "estimate", args.force)
    print(f"[2/3] reconstruction ({args.preset}) finished in {time.time() - t1:.1f} s: {out}")
    scores = _evaluate(out)
    print("[3/3] accuracy against ground truth (held-out views, background pixels):")
    per_shot = scores.pop("per_shot")
    for k, v in scores.items():
        print(f"    {k:>20}: {v:.4g}" if isinstance(v, float) else f"    {k:>20}: {v}")
    for shot, s in per_shot.items():
        print(f"    shot {shot}: PSNR {s['psnr']:.2f} dB, SSIM {s['ssim']:.3f}, depth abs-rel {s['depth_abs_rel']:.4f}"
              f" ({s['n_frames']} held-out frames)")
    print(f"Stage Gaussians: {out / 'stages' / 'stage' / 'stage.ply'} (standard 3DGS PLY)")
    print(f"Preview (input | render): {out / 'stages' / 'stage' / 'preview.png'}")
    return 0


def cmd_synth(args) -> int:
    from .synth.cli import synth_main

    return synth_main(args.rest)


def cmd_reconstruct(args) -> int:
    _run(Path(args.out), Path(args.clip), Path(args.ground_truth) if args.ground_truth else None,
         args.preset, args.estimators, args.depth, args.force)
    print(f"project: {args.out}")
    return 0


def cmd_eval(args) -> int:
    print(json.dumps(_evaluate(Path(args.project)), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="showmaker", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    presets = ("tiny", "preview", "full")

    d = sub.add_parser("demo", help="run the whole chain on the embedded synthetic clip")
    d.add_argument("--out", default="showmaker-demo", help="project directory (default: ./showmaker-demo)")
    d.add_argument("--preset", choices=presets, default="preview")
    d.add_argument("--force", nargs="*", default=[], help="stages to recompute even if cached")
    d.set_defaults(fn=cmd_demo)

    s = sub.add_parser("synth", help="generate a synthetic clip with ground truth", add_help=False)
    s.add_argument("rest", nargs=argparse.REMAINDER)
    s.set_defaults(fn=cmd_synth)

    r = sub.add_parser("reconstruct", help="reconstruct a clip into a project directory")
    r.add_argument("clip", help="video file or folder of images")
    r.add_argument("-o", "--out", required=True, help="project directory (created, or resumed if it exists)")
    r.add_argument("--ground-truth", help="synthetic clip folder (needed by --estimators oracle)")
    r.add_argument("--estimators", choices=("oracle",), default="oracle")
    r.add_argument("--depth", choices=("estimate", "none"), default="estimate",
                   help="'none' trains the stage without depth guidance (degraded mode)")
    r.add_argument("--preset", choices=presets, default="preview")
    r.add_argument("--force", nargs="*", default=[], help="stages to recompute even if cached")
    r.set_defaults(fn=cmd_reconstruct)

    e = sub.add_parser("eval", help="score a project against its synthetic ground truth")
    e.add_argument("project")
    e.set_defaults(fn=cmd_eval)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
