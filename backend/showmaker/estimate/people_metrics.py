"""Accuracy of people estimates against ground truth: track-to-actor matching, mask IoU, keypoint PCK and
identity switches. Pure numpy/scipy; used by the tests and ``benchmarks/bench_estimators_people.py``.

Ground truth follows the synthetic clip: instance masks [F, H, W] (0 background, ``a + 1`` actor ``a``),
SMPL joints in pixels [A, F, 24, 2] with a visibility [A, F, 24] and the shot id of every frame [F].
Estimates are :class:`~showmaker.estimate.people.PeopleTracks`-shaped arrays: instance masks [F, H, W]
(``k + 1`` track ``k``) and keypoints already mapped to SMPL's 24 joints [N, F, 24, 3] (x, y, confidence).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "PeopleScores",
    "count_id_switches",
    "mask_iou",
    "match_tracks_to_actors",
    "pck",
    "score_people",
]


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks; 1.0 when both are empty."""
    a = np.asarray(a, bool)
    b = np.asarray(b, bool)
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def _pair_counts(pred: np.ndarray, gt: np.ndarray, n_pred: int, n_gt: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersections [n_pred+1, n_gt+1] and areas of two id maps (id 0 = background)."""
    p = pred.astype(np.int64).ravel()
    g = gt.astype(np.int64).ravel()
    inter = np.bincount(p * (n_gt + 1) + g, minlength=(n_pred + 1) * (n_gt + 1)).reshape(n_pred + 1, n_gt + 1)
    return inter, inter.sum(1), inter.sum(0)


def match_tracks_to_actors(pred_masks: np.ndarray, gt_masks: np.ndarray, shot_ids: np.ndarray,
                           n_tracks: int, n_actors: int, min_iou: float = 0.1) -> np.ndarray:
    """Assign every track to at most one ground-truth actor, shot by shot (Hungarian on the summed
    per-frame mask IoU of the shot; tracks never span a cut). Pairs whose mean IoU over the frames where
    either is present is below ``min_iou`` stay unmatched.

    Returns actor_of_track [n_tracks] (-1: matched to nobody).
    """
    actor_of_track = np.full(n_tracks, -1, np.int64)
    shot_ids = np.asarray(shot_ids)
    for shot in np.unique(shot_ids):
        frames = np.flatnonzero(shot_ids == shot)
        iou_sum = np.zeros((n_tracks, n_actors))
        count = np.zeros((n_tracks, n_actors))
        for f in frames:
            inter, area_p, area_g = _pair_counts(pred_masks[f], gt_masks[f], n_tracks, n_actors)
            inter, area_p, area_g = inter[1:, 1:], area_p[1:], area_g[1:]
            union = area_p[:, None] + area_g[None, :] - inter
            iou_sum += np.where(union > 0, inter / np.maximum(union, 1), 0.0)
            count += union > 0
        mean = np.where(count > 0, iou_sum / np.maximum(count, 1), 0.0)
        in_shot = np.flatnonzero(iou_sum.sum(1) > 0)
        rows, cols = linear_sum_assignment(-iou_sum[in_shot])
        for r, c in zip(in_shot[rows], cols):
            if mean[r, c] >= min_iou:
                actor_of_track[r] = c
    return actor_of_track


def pck(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, box_size: np.ndarray, alpha: float = 0.1,
        min_confidence: float = 0.0) -> tuple[int, int]:
    """Percentage of correct keypoints: a joint counts when it is visible in the ground truth; it is
    correct when a prediction exists (confidence > ``min_confidence``, finite) within
    ``alpha * box_size`` pixels of the truth.

    pred [..., J, 3] (x, y, confidence), gt [..., J, 2], visible [..., J] bool, box_size [...] pixels.
    Returns (correct, counted); a missing prediction counts as wrong.
    """
    pred = np.asarray(pred, np.float64)
    gt = np.asarray(gt, np.float64)
    visible = np.asarray(visible, bool)
    d = np.linalg.norm(pred[..., :2] - gt, axis=-1)
    found = np.isfinite(d) & (pred[..., 2] > min_confidence)
    ok = found & (d <= alpha * np.asarray(box_size, np.float64)[..., None])
    return int(np.count_nonzero(ok & visible)), int(np.count_nonzero(visible))


def count_id_switches(pred_masks: np.ndarray, gt_masks: np.ndarray, shot_ids: np.ndarray, n_tracks: int,
                      n_actors: int, min_iou: float = 0.5) -> int:
    """Identity switches within shots (CLEAR-MOT style): each frame, ground-truth actors are matched to
    track masks by Hungarian on IoU (pairs below ``min_iou`` unmatched); a switch is counted when an actor's
    matched track differs from the track it was last matched to in the same shot."""
    switches = 0
    last: dict[int, int] = {}
    prev_shot = None
    for f in range(len(shot_ids)):
        if shot_ids[f] != prev_shot:
            last = {}
            prev_shot = shot_ids[f]
        inter, area_p, area_g = _pair_counts(pred_masks[f], gt_masks[f], n_tracks, n_actors)
        inter, area_p, area_g = inter[1:, 1:], area_p[1:], area_g[1:]
        union = area_p[:, None] + area_g[None, :] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        rows, cols = linear_sum_assignment(-iou)
        for r, c in zip(rows, cols):
            if iou[r, c] < min_iou:
                continue
            if c in last and last[c] != r:
                switches += 1
            last[c] = r
    return switches


@dataclass
class PeopleScores:
    """Scores of one people estimate.

    mask_iou_per_actor [A]: mean over the frames where the actor is visible of the IoU between its ground-truth
    mask and the mask of the track matched to it (0 where none). mask_iou: mean over actors.
    pck [J] / pck_counts [J]: PCK per SMPL joint over (matched track, frame) pairs where the joint is visible
    (NaN where never visible); pck_all: over the joints that have a mediapipe counterpart;
    pck_no_hips: the same without the two hip joints (SMPL's hips sit inside the pelvis).
    id_switches: identity switches within shots. actor_of_track [N]: the matching used.
    detection_recall: fraction of (actor, frame) pairs with a visible actor that a matched track covers.
    """

    mask_iou_per_actor: np.ndarray
    mask_iou: float
    pck: np.ndarray
    pck_counts: np.ndarray
    pck_all: float
    pck_no_hips: float
    id_switches: int
    actor_of_track: np.ndarray
    detection_recall: float


def score_people(pred_masks: np.ndarray, pred_joints24: np.ndarray, gt_masks: np.ndarray, gt_joints2d: np.ndarray,
                 gt_visible: np.ndarray, shot_ids: np.ndarray, joints: np.ndarray, hips: tuple[int, ...] = (1, 2),
                 alpha: float = 0.1, min_pixels: int = 50) -> PeopleScores:
    """Score estimated masks and keypoints against ground truth.

    pred_masks [F, H, W] (track k -> k + 1), pred_joints24 [N, F, 24, 3], gt_masks [F, H, W] (actor a -> a + 1),
    gt_joints2d [A, F, 24, 2], gt_visible [A, F, 24] bool, shot_ids [F]; ``joints``: the SMPL joints to score
    (those with a mediapipe counterpart). The PCK threshold is ``alpha`` times the larger side of the actor's
    ground-truth mask box in that frame; actors with fewer than ``min_pixels`` mask pixels in a frame are
    not scored in it.
    """
    F = gt_masks.shape[0]
    N = pred_joints24.shape[0]
    A = gt_joints2d.shape[0]
    actor_of_track = match_tracks_to_actors(pred_masks, gt_masks, shot_ids, N, A)
    iou_sum = np.zeros(A)
    n_vis = np.zeros(A)
    covered = 0
    J = gt_joints2d.shape[2]
    correct = np.zeros(J)
    counted = np.zeros(J)
    for f in range(F):
        for a in range(A):
            gt = gt_masks[f] == a + 1
            npx = np.count_nonzero(gt)
            if npx < min_pixels:
                continue
            n_vis[a] += 1
            tracks = np.flatnonzero(actor_of_track == a)
            ys, xs = np.nonzero(gt)
            size = max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
            track = next((t for t in tracks
                          if np.any(pred_masks[f] == t + 1) or pred_joints24[t, f, :, 2].max() > 0), None)
            vis = np.zeros(J, bool)
            vis[joints] = np.asarray(gt_visible[a, f], bool)[joints]
            if track is None:
                counted += vis
                continue
            covered += 1
            iou_sum[a] += mask_iou(pred_masks[f] == track + 1, gt)
            for j in np.flatnonzero(vis):
                c, n = pck(pred_joints24[track, f, j], gt_joints2d[a, f, j], True, size, alpha)
                correct[j] += c
                counted[j] += n
    per_actor = np.where(n_vis > 0, iou_sum / np.maximum(n_vis, 1), np.nan)
    pck_j = np.where(counted > 0, correct / np.maximum(counted, 1), np.nan)
    no_hips = [j for j in joints if j not in hips]
    return PeopleScores(
        mask_iou_per_actor=per_actor,
        mask_iou=float(np.nanmean(per_actor)) if np.any(n_vis > 0) else float("nan"),
        pck=pck_j,
        pck_counts=counted,
        pck_all=float(correct[joints].sum() / max(counted[joints].sum(), 1)),
        pck_no_hips=float(correct[no_hips].sum() / max(counted[no_hips].sum(), 1)),
        id_switches=count_id_switches(pred_masks, gt_masks, shot_ids, N, A),
        actor_of_track=actor_of_track,
        detection_recall=float(covered / max(n_vis.sum(), 1)),
    )
