"""Score a finished project against the synthetic clip's ground truth: every estimator that ran (shots,
people, cameras, depth alignment, SMPL initialisation) and the stage on held-out views.

Estimated worlds differ from the truth by a similarity (SfM's gauge): cameras are compared after the
alignment ``estimate.cameras.align_similarity`` finds, and depths are rescaled by its scale.
"""
from __future__ import annotations

import json

import numpy as np

from .estimate.cameras import camera_errors
from .estimate.people import SMPL_FROM_MP, PeopleTracks
from .estimate.people_metrics import match_tracks_to_actors, score_people
from .estimate.shots import cut_precision_recall
from .estimate.smpl_fit import mpjpe_root_aligned
from .project import Project
from .reconstruct import load_frames
from .splat import load_ply
from .stage.evaluate import evaluate_views
from .stage.train import from_gaussian_set


def _gt_joints_camera(clip) -> np.ndarray:
    """Ground-truth SMPL joints [A, F, 24, 3] in each frame's camera frame (metres)."""
    R, t = clip.viewmats[:, :3, :3], clip.viewmats[:, :3, 3]
    return np.einsum("fij,afkj->afki", R, clip.smpl["joints"]) + t[None, :, None]


def evaluate_estimators(project: Project, clip) -> dict:
    """Accuracy of each estimator whose outputs the project holds."""
    out: dict = {}
    shots_file = project.stage_dir("shots") / "shots.npz"
    if shots_file.exists():
        pred = np.load(shots_file)["cuts"]
        pr = cut_precision_recall(pred, clip.cuts)
        out["shots"] = {"precision": pr["precision"], "recall": pr["recall"], "cuts": [int(c) for c in pred]}
    cams = np.load(project.stage_dir("cameras") / "cameras.npz")
    err = camera_errors(cams["viewmats"], clip.viewmats, cams["registered"])
    out["cameras"] = {k: float(err[k]) for k in ("rot_mean_deg", "rot_max_deg", "trans_mean", "registered_fraction")}
    people_file = project.stage_dir("masks") / "people.npz"
    if people_file.exists():
        tracks = PeopleTracks.from_arrays(np.load(people_file))
        sc = score_people(tracks.masks, tracks.smpl_keypoints(), clip.masks, clip.joints2d,
                          np.asarray(clip.joint_visible, bool), clip.shot_ids, np.array(sorted(SMPL_FROM_MP)))
        out["people"] = {"mask_iou": float(sc.mask_iou), "pck@0.1": float(sc.pck_all),
                         "id_switches": int(sc.id_switches), "detection_recall": float(sc.detection_recall)}
        smpl_file = project.stage_dir("smpl_init") / "smpl_init.npz"
        if smpl_file.exists() and tracks.n_tracks:
            fit = np.load(smpl_file)
            actor_of = match_tracks_to_actors(tracks.masks, clip.masks, clip.shot_ids, tracks.n_tracks,
                                              clip.smpl["pose"].shape[0])
            gt_cam = _gt_joints_camera(clip)
            errs = [mpjpe_root_aligned(fit["joints_cam"][n, f], gt_cam[a, f])
                    for n, a in enumerate(actor_of) if a >= 0
                    for f in np.flatnonzero(fit["valid"][n] & clip.smpl["present"][a])]
            if errs:
                out["smpl_init"] = {"mpjpe_root_aligned_mm": float(np.mean(errs) * 1000), "actor_frames": len(errs)}
    align = json.loads((project.stage_dir("depth") / "alignment.json").read_text())
    if align["mode"] != "none":
        out["depth_alignment"] = {"frames_aligned": f"{sum(align['valid'])}/{len(align['valid'])}"}
    return out


def evaluate_stage(project: Project, clip, gt_from_est: np.ndarray) -> dict:
    """Held-out stage views: background PSNR / SSIM and rendered depth (ground-truth units), overall and per
    shot. Background = the ground truth's stage pixels."""
    stage_dir = project.stage_dir("stage")
    gs = load_ply(stage_dir / "stage.ply")
    params, sh_degree = from_gaussian_set(gs), gs.sh_degree
    held = json.loads((stage_dir / "train.json").read_text())["held_out"]
    scene = np.load(project.stage_dir("level") / "scene.npz")
    gt_scale = float(np.cbrt(np.linalg.det(gt_from_est[:3, :3])))  # levelling is rigid: scale unchanged
    frames = load_frames(project.stage_dir("ingest"))

    def score(ids):
        return evaluate_views(params, frames, clip.masks, scene["Ks"], scene["viewmats"], clip.depth, ids,
                              sh_degree, gt_scale).as_dict()

    scores = score(held)
    scores["per_shot"] = {int(s): score([f for f in held if clip.shot_ids[f] == s]) for s in np.unique(clip.shot_ids[held])}
    scores["n_gaussians"] = len(gs)
    return scores


def evaluate_project(project_dir) -> dict:
    """Everything measurable against the project's ground truth: ``{"estimators": ..., "stage": ...}``."""
    from .synth import load_clip

    project = Project.open(project_dir)
    if "ground_truth" not in project.inputs:
        raise ValueError(f"{project_dir}: the project has no ground truth to evaluate against "
                         f"(only synthetic clips made by `showmaker synth` have one)")
    clip = load_clip(project.input_path("ground_truth"))
    est = evaluate_estimators(project, clip)
    cams = np.load(project.stage_dir("cameras") / "cameras.npz")
    gt_from_est = camera_errors(cams["viewmats"], clip.viewmats, cams["registered"])["gt_from_est"]
    return {"estimators": est, "stage": evaluate_stage(project, clip, gt_from_est)}
