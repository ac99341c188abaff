"""Benchmark the people estimator (masks, keypoints, tracking) on the default synthetic clip.

    python benchmarks/bench_estimators_people.py                  # the default clip, from the cache
    python benchmarks/bench_estimators_people.py --generate       # render it first if it is missing (bpy)
    python benchmarks/bench_estimators_people.py --clip DIR --frames 24 --hog --json out.json

Prints per-actor mask IoU, PCK@0.1 (of the ground-truth mask box) per joint for the 12 SMPL joints with a
mediapipe counterpart (hips also reported apart: SMPL's hip joints sit inside the pelvis, mediapipe's hip
landmarks on its surface, so hips agree less), identity switches within shots, detection recall and
seconds per frame. Frames whose actor has fewer than ``--min-pixels`` mask pixels are not scored.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from _clip import resolve_clip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clip", help="a synthetic clip directory (default: the default clip in the cache)")
    ap.add_argument("--generate", action="store_true", help="render the default clip if it is not cached")
    ap.add_argument("--frames", type=int, default=0, help="use only the first N frames (0: all)")
    ap.add_argument("--hog", action="store_true", help="also search HOG people detections")
    ap.add_argument("--no-tiles", action="store_true", help="peel the whole frame only")
    ap.add_argument("--no-faces", action="store_true", help="skip FaceMesh")
    ap.add_argument("--min-pixels", type=int, default=100)
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    from showmaker.body.joints import SMPL_JOINT_NAMES
    from showmaker.estimate.people import SMPL_FROM_MP, PeopleConfig, estimate_people
    from showmaker.estimate.people_metrics import score_people
    from showmaker.synth import load_clip

    path = resolve_clip(args.clip, args.generate)
    if path is None:
        return 2
    clip = load_clip(path)
    F = clip.frame_count if args.frames <= 0 else min(args.frames, clip.frame_count)
    frames = np.stack([clip.frames[i] for i in range(F)])
    shots = np.asarray(clip.shot_ids[:F])
    cfg = PeopleConfig(use_hog=args.hog, tiles=not args.no_tiles, faces=not args.no_faces)

    t0 = time.perf_counter()
    out = estimate_people(frames, shots, cfg)
    seconds = time.perf_counter() - t0

    joints = np.array(sorted(SMPL_FROM_MP))
    gt_vis = np.asarray(clip.joint_visible[:, :F], bool)
    sc = score_people(out.masks, out.smpl_keypoints(), clip.masks[:F], clip.joints2d[:, :F], gt_vis, shots, joints,
                      min_pixels=args.min_pixels)
    names = clip.actor_names
    H, W = frames.shape[1:3]
    print(f"clip: {path} ({F} frames, {W}x{H}, {len(names)} actors, {len(np.unique(shots))} shots)")
    print(f"config: hog={cfg.use_hog} tiles={cfg.tiles} faces={cfg.faces} model_complexity={cfg.model_complexity}")
    print(f"tracks: {out.n_tracks} (per shot: {dict(zip(*np.unique(out.shot_of_track, return_counts=True)))}); "
          f"actor of track: {sc.actor_of_track.tolist()}")
    for a, name in enumerate(names):
        print(f"  mask IoU {name}: {sc.mask_iou_per_actor[a]:.3f}")
    print(f"mask IoU (mean over actors): {sc.mask_iou:.3f}")
    print(f"detection recall: {sc.detection_recall:.3f}")
    print("PCK@0.1 per joint:")
    for j in joints:
        print(f"  {SMPL_JOINT_NAMES[j]:15s} {sc.pck[j]:.3f}  (n={int(sc.pck_counts[j])})")
    print(f"PCK@0.1 all 12 joints: {sc.pck_all:.3f}; without hips: {sc.pck_no_hips:.3f}")
    print(f"ID switches within shots: {sc.id_switches}")
    print(f"faces: box in {int(out.face_found.sum())} / mesh in {int(out.face_mesh_found.sum())} of "
          f"{int(out.present.sum())} track-frames")
    print(f"seconds per frame: {seconds / F:.3f} (total {seconds:.1f} s)")
    if args.json:
        result = {
            "clip": str(path), "frames": F, "width": W, "height": H,
            "config": {"hog": cfg.use_hog, "tiles": cfg.tiles, "faces": cfg.faces},
            "mask_iou_per_actor": dict(zip(names, map(float, sc.mask_iou_per_actor))),
            "mask_iou": sc.mask_iou,
            "pck_per_joint": {SMPL_JOINT_NAMES[j]: float(sc.pck[j]) for j in joints},
            "pck_all": sc.pck_all, "pck_no_hips": sc.pck_no_hips,
            "id_switches": sc.id_switches, "detection_recall": sc.detection_recall,
            "n_tracks": out.n_tracks, "seconds_per_frame": seconds / F,
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
