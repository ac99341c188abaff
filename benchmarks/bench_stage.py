"""Stage reconstruction quality on the default synthetic clip, with and without depth guidance.

    python benchmarks/bench_stage.py [--preset preview] [--out benchmarks/out/stage]

Oracle cameras (ground truth behind a random similarity, small noise) and oracle affine-ambiguous depth
(aligned by eq. 2-3), held-out views every 8th frame; prints a markdown table of background PSNR / SSIM
and rendered-depth error (metres) overall and per shot, plus the wall time of each run.
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch

from showmaker.project import Project
from showmaker.evaluate import evaluate_project
from showmaker.reconstruct import ReconstructionConfig, build_pipeline
from showmaker.synth import default_spec, generate_clip


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="preview")
    ap.add_argument("--out", default="benchmarks/out/stage")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clip = generate_clip(default_spec())
    rows = []
    for mode in ("estimate", "none"):
        root = Path(args.out) / f"{args.preset}-{mode}"
        if root.exists():
            shutil.rmtree(root)
        proj = Project.create(root, {"clip": clip / "clip.mp4", "ground_truth": clip})
        t0 = time.time()
        build_pipeline(ReconstructionConfig.preset(args.preset, "oracle", mode)).run(proj)
        wall = time.time() - t0
        s = evaluate_project(root)["stage"]
        rows.append((mode, wall, s))
    print("| depth guidance | shot | PSNR (dB) | SSIM | depth abs-rel | depth RMSE (m) | coverage | wall (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for mode, wall, s in rows:
        label = "on (eq. 5-6)" if mode == "estimate" else "off"
        print(f"| {label} | all | {s['psnr']:.2f} | {s['ssim']:.3f} | {s['depth_abs_rel']:.4f} | {s['depth_rmse']:.3f} "
              f"| {s['coverage']:.3f} | {wall:.0f} |")
        for shot, p in s["per_shot"].items():
            print(f"| {label} | {shot} | {p['psnr']:.2f} | {p['ssim']:.3f} | {p['depth_abs_rel']:.4f} "
                  f"| {p['depth_rmse']:.3f} | {p['coverage']:.3f} | |")


if __name__ == "__main__":
    main()
