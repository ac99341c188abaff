"""The ``showmaker`` command line: demo | synth | reconstruct | eval | qc.

    showmaker demo                       # the embedded synthetic clip, end to end, with a report
    showmaker synth [--spec FILE]        # (re)generate a synthetic clip with ground truth
    showmaker reconstruct CLIP -o PROJ   # run the pipeline on a clip into a project directory
    showmaker eval PROJ                  # score a project against its ground truth
    showmaker qc PROJ                    # contact sheets to check every estimate
"""
from __future__ import annotations

import argparse
import json
import os
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


def _run(project_dir: Path, clip: Path, ground_truth: Path | None, cfg, force: list[str],
         background: Path | None = None):
    """Create (or reopen) the project and run the reconstruction graph with tqdm bars per stage.
    ``background``: a folder of extra images of the set (project input ``background``)."""
    from .project import Project
    from .reconstruct import background_image_paths, build_pipeline, check_inputs

    inputs = {"clip": clip}
    if ground_truth is not None:
        inputs["ground_truth"] = ground_truth
    if background is not None:
        background_image_paths(background)  # a folder holding images, or a clear error before anything runs
        inputs["background"] = background
    if (project_dir / "manifest.json").exists():
        project = Project.open(project_dir)
        for name, path in inputs.items():
            known = project.inputs.get(name)
            if known is None or Path(project.input_path(name)).resolve() != path.resolve():
                raise SystemExit(f"{project_dir} was made from other inputs ({name}: "
                                 f"{known.path if known else 'none'}); choose a new project directory")
    else:
        check_inputs(inputs, cfg.estimators)
        project = Project.create(project_dir, inputs, {"estimators": cfg.estimators})
    check_inputs(project.inputs, cfg.estimators)
    progress, bars = _progress_printer()
    try:
        build_pipeline(cfg, inputs=project.inputs).run(project, force=force, progress=progress)
    finally:
        for bar in bars.values():
            bar.close()


def _print_scores(scores: dict) -> None:
    for name, vals in scores["estimators"].items():
        print(f"    {name:>16}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                            for k, v in vals.items()))
    st = dict(scores["stage"])
    per_shot = st.pop("per_shot")
    print(f"    {'stage':>16}: PSNR {st['psnr']:.2f} dB, SSIM {st['ssim']:.3f}, depth abs-rel "
          f"{st['depth_abs_rel']:.4f}, depth RMSE {st['depth_rmse']:.3f} m, coverage {st['coverage']:.2f}, "
          f"{st['n_gaussians']} Gaussians ({st['n_frames']} held-out frames, background pixels)")
    for shot, s in per_shot.items():
        print(f"    {'shot ' + str(shot):>16}: PSNR {s['psnr']:.2f} dB, SSIM {s['ssim']:.3f}, "
              f"depth abs-rel {s['depth_abs_rel']:.4f}")


def cmd_demo(args) -> int:
    from .evaluate import evaluate_project
    from .reconstruct import ReconstructionConfig
    from .synth import default_spec, generate_clip, load_clip

    t0 = time.time()
    print("ShowMaker demo: the embedded synthetic clip (3 shots, 2 actors, ground truth), end to end.")
    clip_dir = generate_clip(default_spec(), progress=True)
    print(f"[1/3] synthetic clip ready in {time.time() - t0:.1f} s: {clip_dir}")
    out = Path(args.out)
    has_depth_model = args.depth_checkpoint or os.environ.get("SHOWMAKER_DEPTH_CHECKPOINT")
    depth_mode = "estimate" if args.estimators == "oracle" or has_depth_model else "none"
    if depth_mode == "none":
        print("      no depth checkpoint given (--depth-checkpoint): the stage trains without depth guidance")
    cfg = ReconstructionConfig.preset(args.preset, args.estimators, depth_mode, args.depth_model, args.depth_checkpoint)
    clip = load_clip(clip_dir)
    background = clip.background_dir if clip.background_paths else None
    if background is not None:
        print(f"      {len(clip.background_paths)} background images of the set (other episodes, TV-show setting): "
              f"{background}")
    t1 = time.time()
    _run(out, clip_dir / "clip.mp4", clip_dir, cfg, args.force, background)
    print(f"[2/3] reconstruction ({args.estimators} estimators, {args.preset}) finished in {time.time() - t1:.1f} s: {out}")
    print("[3/3] accuracy against the ground truth:")
    _print_scores(evaluate_project(out))
    print(f"Stage Gaussians: {out / 'stages' / 'stage' / 'stage.ply'} (standard 3DGS PLY)")
    print(f"Preview (input | render): {out / 'stages' / 'stage' / 'preview.png'}")
    from .qc import write_contact_sheets

    sheets = write_contact_sheets(out)
    print(f"Contact sheets to check every estimate ({len(sheets)} PNG): {sheets[0].parent}")
    return 0


def cmd_synth(args) -> int:
    from .synth.cli import synth_main

    return synth_main(args.rest)


def cmd_reconstruct(args) -> int:
    from .reconstruct import ReconstructionConfig

    cfg = ReconstructionConfig.preset(args.preset, args.estimators, args.depth, args.depth_model, args.depth_checkpoint)
    _run(Path(args.out), Path(args.clip), Path(args.ground_truth) if args.ground_truth else None, cfg, args.force,
         Path(args.background) if args.background else None)
    print(f"project: {args.out}")
    return 0


def cmd_eval(args) -> int:
    from .evaluate import evaluate_project

    print(json.dumps(evaluate_project(Path(args.project)), indent=2))
    return 0


def cmd_qc(args) -> int:
    from .qc import qc_main

    return qc_main(args.rest)


def _depth_args(p) -> None:
    p.add_argument("--depth-model", choices=("moge2", "depth_anything_v2"), default="moge2")
    p.add_argument("--depth-checkpoint", default=None,
                   help="local checkpoint of the depth model (or set SHOWMAKER_DEPTH_CHECKPOINT)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="showmaker", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    presets = ("tiny", "preview", "full")

    d = sub.add_parser("demo", help="run the whole chain on the embedded synthetic clip")
    d.add_argument("--out", default="showmaker-demo", help="project directory (default: ./showmaker-demo)")
    d.add_argument("--preset", choices=presets, default="tiny",
                   help="tiny: a few minutes on 2 CPU cores; preview: a better stage (about 20 min on 2 cores)")
    d.add_argument("--estimators", choices=("real", "oracle"), default="real",
                   help="real: the estimators for user footage, measured against the ground truth; "
                        "oracle: ground truth with realistic noise (upper bound)")
    _depth_args(d)
    d.add_argument("--force", nargs="*", default=[], help="stages to recompute even if cached")
    d.set_defaults(fn=cmd_demo)

    s = sub.add_parser("synth", help="generate a synthetic clip with ground truth", add_help=False)
    s.add_argument("rest", nargs=argparse.REMAINDER)
    s.set_defaults(fn=cmd_synth)

    r = sub.add_parser("reconstruct", help="reconstruct a clip into a project directory")
    r.add_argument("clip", help="video file or folder of images")
    r.add_argument("-o", "--out", required=True, help="project directory (created, or resumed if it exists)")
    r.add_argument("--ground-truth", help="synthetic clip folder (needed by --estimators oracle)")
    r.add_argument("--background", metavar="DIR",
                   help="folder of extra images of the same set (e.g. other episodes): structure from motion "
                        "matches them with the frames to connect shots that share little (real estimators)")
    r.add_argument("--estimators", choices=("real", "oracle"), default="real",
                   help="oracle reads --ground-truth (synthetic clips only)")
    r.add_argument("--depth", choices=("estimate", "none"), default="estimate",
                   help="'none' trains the stage without depth guidance (degraded mode, no depth model needed)")
    _depth_args(r)
    r.add_argument("--preset", choices=presets, default="preview")
    r.add_argument("--force", nargs="*", default=[], help="stages to recompute even if cached")
    r.set_defaults(fn=cmd_reconstruct)

    e = sub.add_parser("eval", help="score a project against its synthetic ground truth")
    e.add_argument("project")
    e.set_defaults(fn=cmd_eval)

    q = sub.add_parser("qc", help="contact sheets of every estimate (PNG), ground truth beside when known",
                       add_help=False)
    q.add_argument("rest", nargs=argparse.REMAINDER)
    q.set_defaults(fn=cmd_qc)
    return p


def main(argv: list[str] | None = None) -> int:
    from .pipeline import StageFailed

    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except (StageFailed, ValueError, OSError, RuntimeError) as exc:
        if os.environ.get("SHOWMAKER_DEBUG"):
            raise
        print(f"showmaker: error: {exc}", file=sys.stderr)
        print("  (finished stages are kept; fix the cause and rerun the same command to resume. "
              "SHOWMAKER_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
