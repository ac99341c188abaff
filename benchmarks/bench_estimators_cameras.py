"""Benchmark of the real shot and camera estimators against synthetic ground truth.

Usage (from the repository root, in the project's environment)::

    python benchmarks/bench_estimators_cameras.py            # the default synthetic clip if cached, else the box room
    python benchmarks/bench_estimators_cameras.py --generate # render the default clip first if needed (needs bpy)
    python benchmarks/bench_estimators_cameras.py --box-room # the ray-cast box room of tests/test_cameras_sfm.py

Prints, per clip: cut precision / recall (+-1 frame) of ``detect_shots`` on the frames (and on ``clip.mp4``),
then for ``estimate_cameras`` (each mapper asked for) the registered fraction, the rotation error (degrees) and
the camera-centre error relative to the room diagonal after a Umeyama similarity, the focal-length error, and the
run time. ``--json PATH`` also writes the figures as JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))

from showmaker.estimate.cameras import (  # noqa: E402
    CameraConfig,
    CameraEstimationError,
    camera_errors,
    estimate_cameras,
)
from showmaker.estimate.shots import ShotConfig, cut_precision_recall, cuts_from_shot_ids, detect_shots  # noqa: E402


def find_default_clip(generate: bool):
    """The cached default synthetic clip (``generate_clip(default_spec())``), or None."""
    try:
        from showmaker.synth import cache_root, default_spec, generate_clip, load_clip
        from showmaker.synth.clip import is_complete_clip, read_meta
    except ImportError as exc:
        print(f"[synthetic clip unavailable: {exc}]")
        return None
    spec = default_spec().to_dict()
    if generate:
        return load_clip(generate_clip(default_spec()))
    root = cache_root()
    for d in sorted(root.glob("*/")) if root.is_dir() else []:
        if is_complete_clip(d) and read_meta(d).get("spec") == spec:
            return load_clip(d)
    print(f"[no finished default clip under {root}; run with --generate to render it]")
    return None


def clip_inputs(clip) -> dict:
    """The estimator inputs and ground truth of a SynthClip."""
    st = clip.spec.stage
    return {
        "name": f"default synthetic clip ({clip.path.name})",
        "frames": clip.frames[0:len(clip.frames)],
        "masks": clip.masks > 0,
        "shot_ids": np.asarray(clip.shot_ids),
        "cuts": np.asarray(clip.cuts),
        "viewmats": np.asarray(clip.viewmats),
        "Ks": np.asarray(clip.K),
        "scene_size": float(np.linalg.norm([st.width, st.depth, st.height])),
        "video": clip.path / "clip.mp4",
    }


def box_room_inputs(frames_per_shot: int) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from test_cameras_sfm import render_box_room_clip

    c = render_box_room_clip(frames_per_shot=frames_per_shot)
    F = len(c["frames"])
    return {"name": f"box room of tests/test_cameras_sfm.py ({F} frames, 3 shots)", "frames": c["frames"],
            "masks": c["masks"], "shot_ids": c["shot_ids"], "cuts": cuts_from_shot_ids(c["shot_ids"]),
            "viewmats": c["viewmats"], "Ks": np.broadcast_to(c["K"], (F, 3, 3)), "scene_size": c["scene_size"],
            "video": None}


def bench_shots(inp: dict) -> dict:
    out = {}
    for det in ("adaptive", "histogram", "content"):
        t0 = time.perf_counter()
        ids = detect_shots(inp["frames"], ShotConfig(detector=det))
        dt = time.perf_counter() - t0
        r = cut_precision_recall(cuts_from_shot_ids(ids), inp["cuts"], tolerance=1)
        out[det] = {"precision": r["precision"], "recall": r["recall"], "pred": cuts_from_shot_ids(ids).tolist(),
                    "seconds": round(dt, 2)}
    if inp["video"] is not None and Path(inp["video"]).is_file():
        t0 = time.perf_counter()
        ids = detect_shots(inp["video"], ShotConfig())
        r = cut_precision_recall(cuts_from_shot_ids(ids), inp["cuts"], tolerance=1)
        out["adaptive_mp4"] = {"precision": r["precision"], "recall": r["recall"],
                               "pred": cuts_from_shot_ids(ids).tolist(), "n_frames": int(len(ids)),
                               "seconds": round(time.perf_counter() - t0, 2)}
    out["true_cuts"] = [int(c) for c in inp["cuts"]]
    return out


def bench_cameras(inp: dict, cfg: CameraConfig, known_focal: bool) -> dict:
    """One estimate_cameras run; ``known_focal``: pass the true focal length of every shot (fixed)."""
    focal = None
    if known_focal:
        focal = {int(s): float(inp["Ks"][np.flatnonzero(inp["shot_ids"] == s)[0], 0, 0])
                 for s in np.unique(inp["shot_ids"])}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        try:
            res = estimate_cameras(inp["frames"], inp["masks"], inp["shot_ids"], cfg, workdir=Path(tmp),
                                   shot_focal_px=focal)
        except CameraEstimationError as exc:
            return {"error": str(exc), "seconds": round(time.perf_counter() - t0, 1)}
        dt = time.perf_counter() - t0
    # 'auto': Umeyama on the centres, unless they are nearly collinear (one dollying camera), where Umeyama's
    # rotation about their line is arbitrary and the cameras' orientations give it instead.
    err = camera_errors(res["viewmats"], inp["viewmats"], res["registered"], scene_size=inp["scene_size"])
    reg = res["registered"]
    f_err = np.abs(res["Ks"][reg, 0, 0] / inp["Ks"][reg, 0, 0] - 1.0)
    rep = res["report"]
    return {
        "mapper": rep["mapper"],
        "mappers_tried": rep["mappers_tried"],
        "registered_fraction": err["registered_fraction"],
        "rot_mean_deg": err["rot_mean_deg"], "rot_median_deg": err["rot_median_deg"], "rot_max_deg": err["rot_max_deg"],
        "alignment": err["alignment"],
        "rel_rot_mean_deg": err["rel_rot_mean_deg"], "rel_rot_max_deg": err["rel_rot_max_deg"],
        "trans_mean": err["trans_mean"], "trans_median": err["trans_median"], "trans_max": err["trans_max"],
        "focal_rel_err_max": float(f_err.max()) if len(f_err) else float("nan"),
        "n_points": rep["n_points"], "mean_reproj_error_px": rep["mean_reproj_error_px"],
        "per_shot": rep["per_shot"], "timings_s": rep["timings_s"], "seconds": round(dt, 1),
    }


#: name -> (config, known focal lengths?)
VARIANTS = {
    "default": (CameraConfig(), False),
    "global+partial": (CameraConfig(mapper="global", allow_partial=True), False),
    "incremental+partial": (CameraConfig(mapper="incremental", allow_partial=True), False),
    "global+partial+focal": (CameraConfig(mapper="global", allow_partial=True), True),
    "incremental+partial+focal": (CameraConfig(mapper="incremental", allow_partial=True), True),
    "global": (CameraConfig(mapper="global"), False),
    "incremental": (CameraConfig(mapper="incremental"), False),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--generate", action="store_true", help="render the default clip if it is not cached (bpy)")
    ap.add_argument("--box-room", action="store_true", help="measure on the ray-cast box room instead")
    ap.add_argument("--frames-per-shot", type=int, default=12, help="box room: frames per shot")
    ap.add_argument("--variants", default="default,global+partial,incremental+partial,global+partial+focal,"
                                          "incremental+partial+focal",
                    help=f"comma-separated camera runs, of: {', '.join(VARIANTS)} ('+partial': allow_partial, "
                         "'+focal': every shot's true focal length given, kept fixed)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    clip = None if args.box_room else find_default_clip(args.generate)
    inp = clip_inputs(clip) if clip is not None else box_room_inputs(args.frames_per_shot)
    F, H, W = inp["frames"].shape[:3]
    print(f"== {inp['name']}: {F} frames {W}x{H}, {len(inp['cuts']) + 1} shots, "
          f"true cuts {list(map(int, inp['cuts']))}")
    results = {"clip": inp["name"], "frames": F, "width": W, "height": H, "shots": bench_shots(inp), "cameras": {}}
    for det, r in results["shots"].items():
        if det != "true_cuts":
            print(f"shots {det:13s} precision {r['precision']:.2f} recall {r['recall']:.2f} cuts {r['pred']} "
                  f"({r['seconds']} s)")
    for name in [m.strip() for m in args.variants.split(",") if m.strip()]:
        cfg, known_focal = VARIANTS[name]
        r = bench_cameras(inp, cfg, known_focal)
        results["cameras"][name] = r
        if "error" in r:
            print(f"cameras {name}: FAILED after {r['seconds']} s: {r['error']}")
            continue
        print(f"cameras {name}: {r['mapper']} mapping, registered {r['registered_fraction']:.3f}  rot mean/median/max "
              f"{r['rot_mean_deg']:.3f}/{r['rot_median_deg']:.3f}/{r['rot_max_deg']:.3f} deg (aligned on "
              f"{r['alignment']})  relative rot mean/max "
              f"{r['rel_rot_mean_deg']:.3f}/{r['rel_rot_max_deg']:.3f} deg  centre err "
              f"mean/max {r['trans_mean']:.4f}/{r['trans_max']:.4f} of the room diagonal  focal err max "
              f"{100 * r['focal_rel_err_max']:.2f}%  points {r['n_points']}  time {r['seconds']} s "
              f"{r['timings_s']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
