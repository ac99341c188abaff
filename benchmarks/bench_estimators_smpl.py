"""Benchmark SMPL initialisation by optimisation (showmaker.estimate.smpl_fit) on the default synthetic clip.

    python benchmarks/bench_estimators_smpl.py                 # the default clip, from the cache
    python benchmarks/bench_estimators_smpl.py --generate      # render it first if it is missing (bpy)
    python benchmarks/bench_estimators_smpl.py --no-people --frames 30 --json out.json

Inputs fitted, shot by shot (the fit's smoothness never crosses a cut):

* ``oracle-24``: the ground-truth 2D SMPL joints (``joints2d.npz``) plus Gaussian pixel noise
  (``--noise-px``); confidence 0.9 where the joint is visible, 0.5 where it is in the image but hidden, 0
  outside the image. 2D only: limb depth is ambiguous.
* ``oracle-33+3d``: what mediapipe gives, made from the ground-truth body: its 33-landmark layout (joints
  and the nose/eye/ear/heel/toe vertices, projected, plus ``--noise-px``) and world landmarks (hip-centred,
  camera-aligned, plus ``--world-noise`` metres of Gaussian noise).
* ``people``: the real people estimator (``showmaker.estimate.people.estimate_people``: mediapipe's bundled
  pose model, tracked per shot), its tracks matched to actors by mask IoU (skipped with ``--no-people``).

An actor-frame is scored when the actor is on stage with at least half of its body in the image (and, for
``people``, a track matched to it is present). Reported: MPJPE after root (pelvis) alignment in mm; the same
after the best uniform scale (the fit is metric only through the mean-shape prior: body size and distance
trade off); pelvis position error in camera space (m, and depth error in % of the true depth); the mean 2D
reprojection residual (px); seconds of fitting per actor-frame.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch
from _clip import resolve_clip


def _camera_frame(clip):
    """Ground-truth joints [A, F, 24, 3] in each frame's camera frame (metres)."""
    R = clip.viewmats[:, :3, :3]
    t = clip.viewmats[:, :3, 3]
    return np.einsum("fij,afkj->afki", R, clip.smpl["joints"]) + t[None, :, None]


def _oracle_33(clip, body, frames, noise_px, world_noise, rng):
    """mediapipe-layout 2D landmarks [A, F, 33, 3] and world landmarks [A, F, 33, 3] from the true body."""
    from showmaker.estimate.smpl_fit import MEDIAPIPE_TO_SMPL, _extra_vertex_ids

    A = clip.smpl["pose"].shape[0]
    F = len(frames)
    ids = _extra_vertex_ids(body)
    kp = np.zeros((A, F, 33, 3))
    world = np.zeros((A, F, 33, 3))
    for a in range(A):
        t = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float32)  # noqa: E731
        out = body(t(clip.smpl["pose"][a, frames]), t(clip.smpl["betas"][a][None]),
                   t(np.full(F, clip.smpl["scale"][a])), t(clip.smpl["transl"][a, frames]))
        X = np.zeros((F, 33, 3))
        has = np.zeros(33, bool)
        for c in MEDIAPIPE_TO_SMPL:
            X[:, c.landmark] = (out.joints[:, c.joint] if c.joint is not None else out.vertices[:, ids[c.vertex]]).numpy()
            has[c.landmark] = True
        V = clip.viewmats[frames]
        cam = np.einsum("fij,fkj->fki", V[:, :3, :3], X) + V[:, None, :3, 3]
        uvw = np.einsum("fij,fkj->fki", clip.K[frames], cam)
        uv = uvw[..., :2] / np.maximum(uvw[..., 2:], 1e-6) + rng.normal(0, noise_px, (F, 33, 2))
        W, H = clip.meta["width"], clip.meta["height"]
        inside = (cam[..., 2] > 0) & (uv[..., 0] >= 0) & (uv[..., 0] < W) & (uv[..., 1] >= 0) & (uv[..., 1] < H)
        kp[a, ..., :2] = uv
        kp[a, ..., 2] = np.where(has[None] & inside, 0.9, 0.0)
        mid = 0.5 * (cam[:, 23:24] + cam[:, 24:25])
        world[a] = cam - mid + rng.normal(0, world_noise, cam.shape)
    return kp, world


def _scores(fit, gt_cam, mask):
    """Per scored actor-frame: root-aligned MPJPE, scale-aligned MPJPE (mm), pelvis error (m), depth error (%)."""
    from showmaker.estimate.smpl_fit import mpjpe_root_aligned

    est = fit["joints_cam"][mask]
    gt = gt_cam[mask]
    mpjpe = mpjpe_root_aligned(est, gt) * 1000
    a = est - est[:, :1]
    b = gt - gt[:, :1]
    s = (a * b).sum((1, 2)) / np.maximum((a * a).sum((1, 2)), 1e-12)
    mpjpe_s = np.linalg.norm(a * s[:, None, None] - b, axis=-1).mean(-1) * 1000
    pelvis = np.linalg.norm(est[:, 0] - gt[:, 0], axis=-1)
    depth = np.abs(est[:, 0, 2] - gt[:, 0, 2]) / gt[:, 0, 2] * 100
    return mpjpe, mpjpe_s, pelvis, depth, fit["residual"][mask]


def _summary(name, parts, seconds, n_fit):
    mpjpe, mpjpe_s, pelvis, depth, resid = (np.concatenate(p) for p in zip(*parts)) if parts else [np.zeros(0)] * 5
    if len(mpjpe) == 0:
        print(f"{name}: nothing scored")
        return {"input": name, "actor_frames": 0}
    row = {
        "input": name, "actor_frames": int(len(mpjpe)),
        "mpjpe_mm_mean": float(mpjpe.mean()), "mpjpe_mm_median": float(np.median(mpjpe)),
        "mpjpe_scale_aligned_mm_mean": float(mpjpe_s.mean()),
        "pelvis_error_m_median": float(np.median(pelvis)), "depth_error_pct_median": float(np.median(depth)),
        "reprojection_px_mean": float(np.nanmean(resid)),
        "seconds_per_actor_frame": seconds / max(n_fit, 1), "seconds_total": seconds,
    }
    print(f"{name:14s} n={row['actor_frames']:4d}  MPJPE {row['mpjpe_mm_mean']:6.1f} mm (median "
          f"{row['mpjpe_mm_median']:5.1f}; scale-aligned {row['mpjpe_scale_aligned_mm_mean']:5.1f})  pelvis "
          f"{row['pelvis_error_m_median']:.3f} m (depth {row['depth_error_pct_median']:4.1f} %)  reproj "
          f"{row['reprojection_px_mean']:4.2f} px  {row['seconds_per_actor_frame'] * 1000:6.1f} ms/actor-frame")
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clip", help="a synthetic clip directory (default: the default clip in the cache)")
    ap.add_argument("--generate", action="store_true", help="render the default clip if it is not cached")
    ap.add_argument("--frames", type=int, default=0, help="use only the first N frames (0: all)")
    ap.add_argument("--noise-px", type=float, default=2.0, help="oracle keypoint noise (pixels, std)")
    ap.add_argument("--world-noise", type=float, default=0.03, help="oracle world-landmark noise (metres, std)")
    ap.add_argument("--no-people", action="store_true", help="skip the real people estimator")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    from showmaker.estimate.smpl_fit import SmplFitConfig, fit_smpl
    from showmaker.synth import load_clip
    from showmaker.synth.generate import procedural_body

    path = resolve_clip(args.clip, args.generate)
    if path is None:
        return 2
    clip = load_clip(path)
    body = procedural_body()  # the clip's actors are always the procedural body
    F = clip.frame_count if args.frames <= 0 else min(args.frames, clip.frame_count)
    shots = np.asarray(clip.shot_ids[:F])
    gt_cam = _camera_frame(clip)[:, :F]
    A = gt_cam.shape[0]
    scored = clip.smpl["present"][:, :F] & (clip.in_frame_fraction[:, :F] >= 0.5)
    rng = np.random.default_rng(args.seed)
    cfg = SmplFitConfig()
    print(f"clip: {path} ({F} frames, {clip.meta['width']}x{clip.meta['height']}, {A} actors, "
          f"{len(np.unique(shots))} shots); noise {args.noise_px} px, world {args.world_noise} m")

    # Oracle inputs.
    conf24 = np.where(clip.joint_visible[:, :F], 0.9, np.where(clip.joint_in_frame[:, :F], 0.5, 0.0))
    kp24 = np.concatenate([clip.joints2d[:, :F] + rng.normal(0, args.noise_px, clip.joints2d[:, :F].shape),
                           conf24[..., None]], -1)
    kp33, world33 = _oracle_33(clip, body, np.arange(F), args.noise_px, args.world_noise, rng)
    rows = []
    for name, kp, world in (("oracle-24", kp24, None), ("oracle-33+3d", kp33, world33)):
        parts, seconds, n_fit = [], 0.0, 0
        for shot in np.unique(shots):
            fr = np.flatnonzero(shots == shot)
            actors = np.flatnonzero(scored[:, fr].any(1))
            if len(actors) == 0:
                continue
            present = scored[np.ix_(actors, fr)]
            t0 = time.perf_counter()
            fit = fit_smpl(kp[np.ix_(actors, fr)], clip.K[fr], None if world is None else world[np.ix_(actors, fr)],
                           present=present, body_model=body, cfg=cfg)
            seconds += time.perf_counter() - t0
            n_fit += present.size
            parts.append(_scores(fit, gt_cam[np.ix_(actors, fr)], fit["valid"] & present))
        rows.append(_summary(name, parts, seconds, n_fit))

    # The real people estimator.
    if not args.no_people:
        try:
            from showmaker.estimate.people import PeopleConfig, estimate_people
            from showmaker.estimate.people_metrics import match_tracks_to_actors
        except ImportError as e:
            print(f"people: skipped ({e})")
        else:
            frames = np.stack([clip.frames[i] for i in range(F)])
            t0 = time.perf_counter()
            people = estimate_people(frames, shots, PeopleConfig())
            t_people = time.perf_counter() - t0
            actor_of = match_tracks_to_actors(people.masks, clip.masks[:F], shots, people.n_tracks, A)
            parts, seconds, n_fit = [], 0.0, 0
            for shot in np.unique(shots):
                fr = np.flatnonzero(shots == shot)
                tracks = [k for k in np.flatnonzero(people.shot_of_track == shot) if actor_of[k] >= 0]
                if not tracks:
                    continue
                present = people.present[np.ix_(tracks, fr)]
                t0 = time.perf_counter()
                fit = fit_smpl(people.keypoints2d[np.ix_(tracks, fr)], clip.K[fr],
                               people.world_landmarks[np.ix_(tracks, fr)], present=present, body_model=body, cfg=cfg)
                seconds += time.perf_counter() - t0
                n_fit += int(present.sum())
                gt = gt_cam[np.ix_(actor_of[tracks], fr)]
                mask = fit["valid"] & scored[np.ix_(actor_of[tracks], fr)]
                parts.append(_scores(fit, gt, mask))
            print(f"people estimator: {people.n_tracks} tracks, {t_people / F:.2f} s/frame (not included below)")
            rows.append(_summary("people", parts, seconds, n_fit))

    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"clip": str(path), "frames": F, "noise_px": args.noise_px, "world_noise_m": args.world_noise,
                       "results": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
