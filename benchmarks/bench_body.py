"""Time posing the body model on the CPU: smplx's forward vs. our LBS helpers.

    python benchmarks/bench_body.py                 # batch of 100 frames, procedural body
    python benchmarks/bench_body.py --batch 100 --repeats 20 --threads 2

Poses a batch of random frames (one shape, as for one actor) three ways and prints the median time
per batch: ``BodyModel.forward`` (smplx.SMPL, including its pose-blend-shape product), our
``forward_kinematics`` + ``linear_blend_skinning`` on precomputed rest vertices, and the variant that
also returns per-vertex rotations (for turning Gaussians). Uses ``$SHOWMAKER_SMPL_DIR`` if set.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from showmaker.body import (
    axis_angle_to_matrix,
    forward_kinematics,
    linear_blend_skinning,
    linear_blend_skinning_with_rotations,
    load_body_model,
)


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=100, help="frames posed per call")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    body = load_body_model()
    g = torch.Generator().manual_seed(0)
    pose = torch.randn(args.batch, 24, 3, generator=g) * 0.4
    betas = torch.randn(1, body.num_betas, generator=g).expand(args.batch, -1)
    rest_vertices, rest_joints = body.rest_vertices(betas[:1]), body.rest_joints(betas[:1])

    def ours():
        _, transforms = forward_kinematics(axis_angle_to_matrix(pose), rest_joints, body.parents)
        return linear_blend_skinning(rest_vertices[0], body.weights, transforms)

    def ours_with_rotations():
        _, transforms = forward_kinematics(axis_angle_to_matrix(pose), rest_joints, body.parents)
        return linear_blend_skinning_with_rotations(rest_vertices[0], body.weights, transforms)

    print(f"body: {body.source.name}, {body.num_vertices} vertices; batch {args.batch}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with torch.no_grad():
        for name, fn in [
            ("smplx forward (BodyModel.forward)", lambda: body(pose, betas)),
            ("our FK + LBS", ours),
            ("our FK + LBS + per-vertex rotations", ours_with_rotations),
        ]:
            seconds = _median_seconds(fn, args.repeats)
            print(f"{name:40s} {seconds * 1e3:8.1f} ms / batch   {seconds * 1e3 / args.batch:7.3f} ms / frame")


if __name__ == "__main__":
    main()
