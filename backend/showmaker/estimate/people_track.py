"""Multi-person tracking within one shot: online Hungarian matching of per-frame person observations to
tracks on predicted-box IoU, keypoint distance and clothing appearance (:class:`ShotTracker`); offline,
joining tracklets split by a long occlusion (:func:`stitch_tracklets`) and keeping left and right legs
consistent along a track (:func:`consistent_left_right`).

Pure numpy/scipy (no image models): :mod:`showmaker.estimate.people` feeds it one frame of observations
at a time and asks it for predicted boxes (so a person the detector missed is searched where its track is
expected). Boxes are ``(x0, y0, x1, y1)`` in pixels (pixel centres at +0.5); keypoints are mediapipe's 33
landmarks ``(x, y, visibility)``.

Cost of pairing track ``t`` with observation ``o`` (lower is better; a pair is allowed only when the
predicted box overlaps (IoU >= ``min_iou``) or the keypoints agree (distance <= ``max_kp_dist``)):

    w_iou * (1 - IoU(pred_t, box_o)) + w_kp * min(1, d_kp) + w_app * d_app

``pred_t`` is the track's last box moved by its smoothed velocity for the frames since it was last seen
(constant-velocity model: two people crossing keep their identities). ``d_kp`` is the mean distance of the
joints confident in both, each shifted by the same velocity, divided by the track box's diagonal. ``d_app``
is the Hellinger distance of the colour histograms of the two masks (0 same, 1 disjoint).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "ARM_PAIRS",
    "LEG_PAIRS",
    "ShotTracker",
    "StitchConfig",
    "TrackerConfig",
    "box_iou",
    "consistent_left_right",
    "hellinger",
    "stitch_tracklets",
    "swap_limbs",
]

#: Landmarks of the body (shoulders, elbows, wrists, hips, knees, ankles) used for keypoint distances.
BODY_LANDMARKS = np.array([11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28])
_INFEASIBLE = 1e6


@dataclass
class TrackerConfig:
    """Matching weights and gates of :class:`ShotTracker` (ours; tuned on the synthetic clip).

    w_iou / w_kp / w_app: weights of the three cost terms.
    min_iou / max_kp_dist: a pair is allowed when IoU >= min_iou or the keypoint distance <= max_kp_dist.
    max_cost: pairs costing more stay unmatched (the observation may start a new track).
    max_gap: frames a track may go unseen and still be continued (its box coasts at constant velocity).
    velocity_smoothing: weight of the newest displacement in the exponential average of the velocity.
    appearance_smoothing: weight of the newest histogram in the track's running appearance.
    min_visibility: landmarks below this visibility are ignored in keypoint distances.
    """

    w_iou: float = 1.0
    w_kp: float = 1.0
    w_app: float = 1.0
    min_iou: float = 0.05
    max_kp_dist: float = 0.5
    max_cost: float = 2.0
    max_gap: int = 5
    velocity_smoothing: float = 0.5
    appearance_smoothing: float = 0.3
    min_visibility: float = 0.5


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes a [A, 4] and b [B, 4] (x0, y0, x1, y1) -> [A, B]."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]).clip(0) * (a[:, 3] - a[:, 1]).clip(0)
    area_b = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def hellinger(p: np.ndarray, q: np.ndarray) -> float:
    """Hellinger distance of two histograms (normalised here): 0 identical, 1 disjoint."""
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    sp, sq = p.sum(), q.sum()
    if sp <= 0 or sq <= 0:
        return 0.0
    bc = np.sqrt(p / sp * q / sq).sum()
    return float(np.sqrt(max(0.0, 1.0 - bc)))


@dataclass
class _Track:
    tid: int
    box: np.ndarray  # [4] last observed box
    keypoints: np.ndarray | None  # [33, 3] last observed
    appearance: np.ndarray | None
    last_frame: int
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))  # per frame, of the box corners
    hits: int = 1


class ShotTracker:
    """Tracks people through the frames of one shot (make a new one at every cut).

    Call :meth:`update` once per frame, in order, with that frame's observations; it returns the track id
    of each observation (ids count from 0 in order of creation). :meth:`predicted_boxes` gives where the
    live tracks are expected in a frame, :attr:`hits` how many frames each track was seen in.
    """

    def __init__(self, cfg: TrackerConfig | None = None):
        self.cfg = cfg or TrackerConfig()
        self._tracks: list[_Track] = []
        self._next_id = 0
        self.hits: dict[int, int] = {}

    def _live(self, frame: int) -> list[_Track]:
        return [t for t in self._tracks if frame - t.last_frame <= self.cfg.max_gap + 1 and frame > t.last_frame]

    def predicted_boxes(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """(track ids [T], predicted boxes [T, 4]) of the tracks still alive at ``frame``."""
        live = self._live(frame)
        if not live:
            return np.zeros(0, np.int64), np.zeros((0, 4))
        return (np.array([t.tid for t in live], np.int64),
                np.stack([t.box + t.velocity * (frame - t.last_frame) for t in live]))

    def cost_matrix(self, frame: int, boxes: np.ndarray, keypoints: np.ndarray | None = None,
                    appearance: np.ndarray | None = None) -> tuple[list[_Track], np.ndarray]:
        """The live tracks and their pairing costs [T, O] with the observations (infeasible pairs: 1e6)."""
        cfg = self.cfg
        live = self._live(frame)
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        if not live or len(boxes) == 0:
            return live, np.zeros((len(live), len(boxes)))
        _, pred = self.predicted_boxes(frame)
        iou = box_iou(pred, boxes)
        cost = cfg.w_iou * (1.0 - iou)
        kp_ok = np.zeros_like(iou, dtype=bool)
        for i, t in enumerate(live):
            dt = frame - t.last_frame
            diag = max(float(np.hypot(t.box[2] - t.box[0], t.box[3] - t.box[1])), 1.0)
            shift = 0.5 * (t.velocity[:2] + t.velocity[2:]) * dt
            for j in range(len(boxes)):
                d_kp = 1.0
                if keypoints is not None and t.keypoints is not None:
                    a = t.keypoints[BODY_LANDMARKS]
                    b = keypoints[j][BODY_LANDMARKS]
                    both = (a[:, 2] >= cfg.min_visibility) & (b[:, 2] >= cfg.min_visibility)
                    if both.sum() >= 3:
                        d_kp = float(np.linalg.norm(a[both, :2] + shift - b[both, :2], axis=1).mean() / diag)
                        kp_ok[i, j] = d_kp <= cfg.max_kp_dist
                cost[i, j] += cfg.w_kp * min(1.0, d_kp)
                if appearance is not None and t.appearance is not None:
                    cost[i, j] += cfg.w_app * hellinger(t.appearance, appearance[j])
        feasible = (iou >= cfg.min_iou) | kp_ok
        cost = np.where(feasible & (cost <= cfg.max_cost), cost, _INFEASIBLE)
        return live, cost

    def update(self, frame: int, boxes: np.ndarray, keypoints: np.ndarray | None = None,
               appearance: np.ndarray | None = None) -> np.ndarray:
        """Match this frame's observations (boxes [O, 4], keypoints [O, 33, 3], appearance [O, D]) to the
        tracks; unmatched observations start new tracks. Returns the track id of each observation [O]."""
        cfg = self.cfg
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        live, cost = self.cost_matrix(frame, boxes, keypoints, appearance)
        ids = np.full(len(boxes), -1, np.int64)
        if len(live) and len(boxes):
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                if cost[r, c] >= _INFEASIBLE:
                    continue
                t = live[r]
                dt = frame - t.last_frame
                step = (boxes[c] - t.box) / dt
                a = cfg.velocity_smoothing
                t.velocity = step if t.hits == 1 else a * step + (1 - a) * t.velocity
                t.box = boxes[c].copy()
                if keypoints is not None:
                    t.keypoints = np.asarray(keypoints[c], np.float64).copy()
                if appearance is not None:
                    new = np.asarray(appearance[c], np.float64)
                    s = cfg.appearance_smoothing
                    t.appearance = new.copy() if t.appearance is None else s * new + (1 - s) * t.appearance
                t.last_frame = frame
                t.hits += 1
                self.hits[t.tid] = t.hits
                ids[c] = t.tid
        for c in np.flatnonzero(ids < 0):
            t = _Track(
                tid=self._next_id,
                box=boxes[c].copy(),
                keypoints=None if keypoints is None else np.asarray(keypoints[c], np.float64).copy(),
                appearance=None if appearance is None else np.asarray(appearance[c], np.float64).copy(),
                last_frame=frame,
            )
            self._tracks.append(t)
            self.hits[t.tid] = 1
            self._next_id += 1
            ids[c] = t.tid
        return ids


@dataclass
class StitchConfig:
    """When two tracklets of one shot are the same person seen again after a long occlusion (ours).

    max_gap: most frames between the end of one and the start of the other.
    max_appearance: largest Hellinger distance between their mean colour histograms.
    max_move: largest jump of the box centre, in box diagonals, plus ``move_per_frame`` diagonals per frame
        of the gap.
    """

    max_gap: int = 48
    max_appearance: float = 0.45
    max_move: float = 0.75
    move_per_frame: float = 0.05


def stitch_tracklets(frames: dict[int, np.ndarray], boxes: dict[int, np.ndarray],
                     appearance: dict[int, np.ndarray] | None = None, cfg: StitchConfig | None = None
                     ) -> dict[int, int]:
    """Join tracklets of one shot that do not overlap in time into longer tracks.

    frames[t] [n_t] sorted frame indices of tracklet t, boxes[t] [n_t, 4] its boxes, appearance[t] [D] its
    summed colour histogram (None: no appearance test). Candidate links (a ends before b starts, within the
    gates of :class:`StitchConfig`) are taken greedily from the cheapest (appearance distance + normalised
    jump); each tracklet gets at most one successor and one predecessor. Returns the track every tracklet
    belongs to (the id of the first tracklet of its chain).
    """
    cfg = cfg or StitchConfig()
    ids = sorted(frames)
    first = {t: int(frames[t][0]) for t in ids}
    last = {t: int(frames[t][-1]) for t in ids}
    links = []
    for a in ids:
        for b in ids:
            gap = first[b] - last[a]
            if a == b or gap <= 0 or gap > cfg.max_gap:
                continue
            ba, bb = np.asarray(boxes[a][-1], np.float64), np.asarray(boxes[b][0], np.float64)
            diag = max(float(np.hypot(ba[2] - ba[0], ba[3] - ba[1])), 1.0)
            move = float(np.linalg.norm(0.5 * (ba[:2] + ba[2:]) - 0.5 * (bb[:2] + bb[2:]))) / diag
            if move > cfg.max_move + cfg.move_per_frame * gap:
                continue
            app = 0.0
            if appearance is not None:
                app = hellinger(appearance[a], appearance[b])
                if app > cfg.max_appearance:
                    continue
            links.append((app + move / (cfg.max_move + cfg.move_per_frame * gap), a, b))
    succ: dict[int, int] = {}
    pred: dict[int, int] = {}
    for _, a, b in sorted(links):
        if a in succ or b in pred:
            continue
        # No cycles are possible (links go forward in time); chains never overlap in time because a chain's
        # tracklets are ordered by their frames.
        succ[a], pred[b] = b, a
    root = {}
    for t in ids:
        r = t
        while r in pred:
            r = pred[r]
        root[t] = r
    return root


#: Left/right landmark pairs of the limbs that pose models mix up (mediapipe indices): legs (knees,
#: ankles, heels, toes) and arms (elbows, wrists, hand points). Hips and shoulders are not included: a
#: whole-body mirror (front/back confusion) is a different error.
LEG_PAIRS = ((25, 26), (27, 28), (29, 30), (31, 32))
ARM_PAIRS = ((13, 14), (15, 16), (17, 18), (19, 20), (21, 22))


def swap_limbs(keypoints: np.ndarray, pairs) -> np.ndarray:
    """A copy of keypoints [..., 33, C] with each (left, right) pair of ``pairs`` exchanged."""
    out = np.array(keypoints, copy=True)
    for a, b in pairs:
        out[..., [a, b], :] = out[..., [b, a], :]
    return out


def consistent_left_right(keypoints: np.ndarray, pairs, swap_cost: float = 0.3, min_visibility: float = 0.5
                          ) -> np.ndarray:
    """Which frames of one track should have the limbs of ``pairs`` swapped so that left and right stay
    consistent through time (pose models flip legs for a frame or two, most often in side views).

    keypoints [T, 33, 3] (x, y, visibility), the track's frames in order. Viterbi over two states per frame
    (as detected / swapped): moving between consecutive frames costs the mean distance of the pair joints
    confident in both, in torso lengths; choosing "swapped" costs ``swap_cost``, so the detector's own
    labelling wins unless swapping makes the motion markedly smoother. Returns swapped [T] bool.
    """
    kp = np.asarray(keypoints, np.float64)
    T = len(kp)
    if T == 0:
        return np.zeros(0, bool)
    idx = np.array([i for p in pairs for i in p])
    states = [kp, swap_limbs(kp, pairs)]
    torso = np.linalg.norm(kp[:, [11, 12], :2].mean(1) - kp[:, [23, 24], :2].mean(1), axis=1)
    torso = np.maximum(torso, 1.0)
    cost = np.array([0.0, swap_cost])
    back = np.zeros((T, 2), np.int64)
    for t in range(1, T):
        step = np.zeros((2, 2))  # [previous state, current state]
        for i in range(2):
            for j in range(2):
                a = states[i][t - 1, idx]
                b = states[j][t, idx]
                ok = (a[:, 2] >= min_visibility) & (b[:, 2] >= min_visibility)
                if ok.any():
                    step[i, j] = np.linalg.norm(a[ok, :2] - b[ok, :2], axis=1).mean() / torso[t]
        total = cost[:, None] + step + np.array([0.0, swap_cost])[None, :]
        back[t] = np.argmin(total, axis=0)
        cost = total[back[t], [0, 1]]
    path = np.zeros(T, np.int64)
    path[-1] = int(np.argmin(cost))
    for t in range(T - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path.astype(bool)
