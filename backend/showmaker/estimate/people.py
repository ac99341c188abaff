"""People: instance masks, 2D keypoints, metric 3D landmarks and face regions of several people per
frame, tracked to stable identities within each shot (METHOD section 1 "actor masks", section 3 "2D
keypoints"). The real estimator runs only the models bundled with mediapipe 0.10.21 (BlazePose GHUM
"full" with its segmentation head, FaceMesh) and OpenCV's HOG people detector: nothing is downloaded.

BlazePose finds one person per call. Per frame we therefore:

1. *Find* people by peeling: run Pose on the whole frame, keep the person, erase it (its dilated
   segmentation mask plus the hull of its landmarks, filled in by low-resolution inpainting so that no
   person-shaped silhouette is left for the detector), run again, until Pose finds nobody or
   ``max_people`` are found. Then peel square tiles of the frame the same way: the person detector sees the
   whole frame at 224 x 224 and misses small people in wide frames.
2. *Search* the boxes where it could have missed someone: the predicted boxes of the shot's live tracks
   and (optionally) HOG detections that no found person explains. Each box is padded, the people found so
   far are erased from it, and Pose runs on that crop. A result whose keypoints coincide with a person
   already found is a duplicate and is dropped.
3. *Masks*: each person keeps the segmentation probability of the Pose call that found it (BlazePose
   computes it in its region of interest around that person), cut to its skeleton drawn thick
   (:func:`skeleton_gate`); where several people claim a pixel (probability >= ``mask_threshold``) the
   nearest one wins. "Nearest" is the person whose feet touch the floor lower in the image (feet
   landmarks, or estimated from the torso when the feet are not visible): a camera above the floor sees
   nearer people's feet lower. See :func:`resolve_overlaps`.
4. *Faces*: FaceMesh on a square crop around each person's face landmarks.
5. *Track* within the shot (:class:`~showmaker.estimate.people_track.ShotTracker`: Hungarian on predicted
   box IoU + keypoint distance + clothing colour histogram), join tracklets split by a long occlusion
   (same clothes, plausible jump), drop tracks seen in too few frames, and make left and right legs
   consistent along each track (pose models flip legs for a frame or two in side views).

Conventions: frames are RGB uint8; pixel coordinates have pixel centres at +0.5 (mediapipe's normalised
coordinates span the image edges, so ``x_px = x_norm * W``); boxes are ``(x0, y0, x1, y1)``. Absent
entries of the output arrays are zero and the boolean arrays say what exists.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .landmarks import MP_LANDMARK_NAMES
from .people_track import (
    BODY_LANDMARKS,
    LEG_PAIRS,
    ShotTracker,
    StitchConfig,
    TrackerConfig,
    box_iou,
    consistent_left_right,
    stitch_tracklets,
    swap_limbs,
)

__all__ = [
    "MP_LANDMARK_NAMES",
    "MP_NUM_LANDMARKS",
    "SMPL_FROM_MP",
    "SMPL_FROM_MP_APPROX",
    "NUM_FACE_LANDMARKS",
    "PeopleConfig",
    "PeopleEstimator",
    "PeopleTracks",
    "PersonObservation",
    "depth_order_key",
    "estimate_people",
    "mediapipe_to_smpl24",
    "resolve_overlaps",
    "skeleton_gate",
]

MP_NUM_LANDMARKS = 33
NUM_FACE_LANDMARKS = 468

#: SMPL joint index -> mediapipe landmark index, for the joints that are the same anatomical point in both
#: (left = the body's own left in both). SMPL's hip joints sit inside the pelvis (higher and closer
#: together than mediapipe's hip landmarks), so the hips agree only to a few centimetres.
SMPL_FROM_MP: dict[int, int] = {
    1: 23,  # left_hip
    2: 24,  # right_hip
    4: 25,  # left_knee
    5: 26,  # right_knee
    7: 27,  # left_ankle
    8: 28,  # right_ankle
    16: 11,  # left_shoulder
    17: 12,  # right_shoulder
    18: 13,  # left_elbow
    19: 14,  # right_elbow
    20: 15,  # left_wrist
    21: 16,  # right_wrist
}
#: Approximate correspondences (used only with ``approximate=True``, at half confidence): SMPL joint ->
#: mediapipe landmarks averaged. pelvis = mid-hips; neck = between the shoulder midpoint and the ears;
#: head = mid-ears; feet = toe tips (SMPL's foot joint is at the ball of the foot); hands = mean of
#: index and pinky knuckles.
SMPL_FROM_MP_APPROX: dict[int, tuple[int, ...]] = {
    0: (23, 24),
    12: (11, 12, 7, 8),
    15: (7, 8),
    10: (31,),
    11: (32,),
    22: (17, 19),
    23: (18, 20),
}

_FACE_LANDMARKS = np.arange(0, 11)
_FEET = np.array([27, 28, 29, 30, 31, 32])
_MODEL_FILES = {0: "pose_landmark_lite.tflite", 1: "pose_landmark_full.tflite", 2: "pose_landmark_heavy.tflite"}


def mediapipe_to_smpl24(keypoints: np.ndarray, approximate: bool = False) -> np.ndarray:
    """Mediapipe landmarks [..., 33, C] -> SMPL's 24 joints [..., 24, C]. Joints without a counterpart
    are zero (their last channel, the confidence, is 0). With ``approximate`` the joints of
    :data:`SMPL_FROM_MP_APPROX` are filled too, with half the smallest confidence of their sources."""
    keypoints = np.asarray(keypoints)
    out = np.zeros(keypoints.shape[:-2] + (24, keypoints.shape[-1]), keypoints.dtype)
    for j, m in SMPL_FROM_MP.items():
        out[..., j, :] = keypoints[..., m, :]
    if approximate:
        for j, ms in SMPL_FROM_MP_APPROX.items():
            src = keypoints[..., list(ms), :]
            if j == 12:  # neck: halfway between the shoulder midpoint and the ear midpoint
                out[..., j, :-1] = 0.5 * (src[..., :2, :-1].mean(-2) + src[..., 2:, :-1].mean(-2))
            else:
                out[..., j, :-1] = src[..., :-1].mean(-2)
            out[..., j, -1] = 0.5 * src[..., -1].min(-1)
    return out


@dataclass
class PeopleConfig:
    """Settings of :func:`estimate_people` (defaults ours, checked on the synthetic clip).

    model_complexity: BlazePose variant; mediapipe 0.10.21 bundles only 1 ("full"). 0 and 2 would need a
        download, which this project never does: they raise unless their model file is already installed.
    max_people: most people found per frame.
    detection_confidence: BlazePose's min_detection_confidence (person detector score).
    min_visible_joints: a result is a person only when this many of the 12 body landmarks (shoulders,
        elbows, wrists, hips, knees, ankles) have visibility >= ``visibility_threshold``.
    mask_threshold: segmentation probability that makes a pixel a person's.
    skeleton_gate: a person's mask is cut to its limbs, torso and head drawn this many torso lengths thick
        (:func:`skeleton_gate`; 0 turns the gate off).
    crop_pad: search crops are the box grown by this fraction of its size on every side.
    crop_min_size: search crops smaller than this (longer side, pixels) are upscaled to it.
    erase_skeleton / erase_dilate: a found person is erased (before looking for the next one) where its
        mask is and along its skeleton drawn ``erase_skeleton`` torso lengths thick, grown by
        ``erase_dilate`` torso lengths (at least a pixel). Generous regions swallow people behind.
    tiles: after the whole frame, peel square tiles (side = the shorter image side, half overlapping)
        too: the person detector sees the frame at 224 x 224 and misses small people in wide frames.
    use_track_hints: search where the shot's live tracks are predicted but nobody was found.
    use_hog: search OpenCV HOG people detections that nobody found explains. HOG finds only whole,
        upright people of at least 64 x 128 pixels (after ``hog_max_side`` downscaling); off by default: it
        added nothing on the synthetic clip (its people are ~100 pixels tall) and costs ~0.15 s per
        640-pixel frame.
    hog_threshold: minimum HOG SVM score; hog_max_side: frames are downscaled to this longer side for HOG.
    duplicate_dist: a result whose body keypoints are on average closer than this fraction of the
        person's box diagonal to an already found person's is the same person.
    max_erased_overlap: a result with more of its mask than this on the pixels erased for the people found
        before is a remnant of them (or a person hallucinated into the inpainting) and is dropped.
    faces: run FaceMesh on every person's face; face_min_size: smallest face crop side (pixels) tried.
    min_track_frames / min_track_fill: tracks seen in fewer frames of their shot (half the shot's frames
        in shots shorter than twice that), or in less than this fraction of the frames between their first
        and last, are dropped as false positives (a hallucinated person comes and goes; a real one is found
        in most frames).
    left_right_swap_cost: legs flipped left/right for a frame or two are put back along each track
        (:func:`~showmaker.estimate.people_track.consistent_left_right`; this is the cost of a swap in torso
        lengths of motion; None: keep the detector's labels). Arms are left alone: on the synthetic clip
        the same fix on arms (fast gestures) swapped as many right arms wrong as it fixed.
    tracker: matching weights and gates (:class:`~showmaker.estimate.people_track.TrackerConfig`).
    stitch: joins tracklets of one person split by a long occlusion
        (:class:`~showmaker.estimate.people_track.StitchConfig`; None: no stitching).
    """

    model_complexity: int = 1
    max_people: int = 6
    detection_confidence: float = 0.5
    min_visible_joints: int = 4
    visibility_threshold: float = 0.5
    mask_threshold: float = 0.5
    skeleton_gate: float = 0.5
    crop_pad: float = 0.25
    crop_min_size: int = 256
    erase_skeleton: float = 0.15
    erase_dilate: float = 0.05
    tiles: bool = True
    use_track_hints: bool = True
    use_hog: bool = False
    hog_threshold: float = 0.5
    hog_max_side: int = 640
    duplicate_dist: float = 0.12
    max_erased_overlap: float = 0.5
    faces: bool = True
    face_min_size: int = 16
    min_track_frames: int = 5
    min_track_fill: float = 0.5
    left_right_swap_cost: float | None = 0.3
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    stitch: StitchConfig | None = field(default_factory=StitchConfig)


@dataclass
class PeopleTracks:
    """People tracked through a clip: N tracks over F frames.

    masks [F, H, W] uint8: 0 background, k + 1 track k (uint16 if there are more than 255 tracks).
    keypoints2d [N, F, 33, 3]: mediapipe landmarks (x, y pixels, pixel centres at +0.5; visibility).
    world_landmarks [N, F, 33, 3]: mediapipe's metric 3D landmarks (metres, origin between the hips, x to
        the image right, y down, z away from the camera).
    boxes [N, F, 4]: (x0, y0, x1, y1) around the mask and the visible keypoints.
    present [N, F] bool: the track is seen in the frame. scores [N, F]: mean body-landmark visibility.
    shot_of_track [N]: the shot each track lives in (tracks never cross a cut).
    face_found [N, F] bool / face_boxes [N, F, 4]: the face region (FaceMesh's landmarks when found, else
        the pose's face landmarks).
    face_mesh_found [N, F] bool / face_landmarks [N, F, 468, 3]: FaceMesh landmarks (x, y pixels; z in the
        same pixel scale, relative to the face centre, smaller is nearer).
    Absent entries are zero.
    """

    masks: np.ndarray
    keypoints2d: np.ndarray
    world_landmarks: np.ndarray
    boxes: np.ndarray
    present: np.ndarray
    scores: np.ndarray
    shot_of_track: np.ndarray
    face_found: np.ndarray
    face_boxes: np.ndarray
    face_mesh_found: np.ndarray
    face_landmarks: np.ndarray

    @property
    def n_tracks(self) -> int:
        return int(self.keypoints2d.shape[0])

    def smpl_keypoints(self, approximate: bool = False) -> np.ndarray:
        """keypoints2d mapped to SMPL's 24 joints [N, F, 24, 3] (see :func:`mediapipe_to_smpl24`)."""
        return mediapipe_to_smpl24(self.keypoints2d, approximate)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fields as a dict of arrays (for ``atomic_save_npz``); inverse: :meth:`from_arrays`."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_arrays(cls, arrays) -> "PeopleTracks":
        return cls(**{k: np.asarray(arrays[k]) for k in cls.__dataclass_fields__})


@dataclass
class PersonObservation:
    """One person in one frame, before tracking.

    box [4]; keypoints [33, 3] (x, y, visibility) and world [33, 3] as in :class:`PeopleTracks`;
    prob [h, w] float32: segmentation probability in the region starting at pixel ``origin`` (x0, y0);
    score: mean visibility of the body landmarks; source: "peel", "track" or "hog";
    face_box [4] / face_landmarks [468, 3] or None.
    """

    box: np.ndarray
    keypoints: np.ndarray
    world: np.ndarray
    prob: np.ndarray
    origin: tuple[int, int]
    score: float
    source: str
    face_box: np.ndarray | None = None
    face_landmarks: np.ndarray | None = None


def depth_order_key(keypoints: np.ndarray, box: np.ndarray, visibility_threshold: float = 0.5) -> float:
    """Image row where the person meets the floor; larger = nearer to a camera above the floor.

    The lowest visible foot landmark (ankles, heels, toes) when there is one; else the hip midpoint plus
    1.8 torso lengths (hip-to-floor ~ 0.9 m, shoulder-to-hip ~ 0.5 m); else the box bottom.
    """
    kp = np.asarray(keypoints)
    feet = kp[_FEET]
    seen = feet[:, 2] >= visibility_threshold
    if seen.any():
        return float(feet[seen, 1].max())
    sh, hp = kp[[11, 12]], kp[[23, 24]]
    if (sh[:, 2] >= visibility_threshold).all() and (hp[:, 2] >= visibility_threshold).all():
        hip = hp[:, :2].mean(0)
        torso = float(np.linalg.norm(hip - sh[:, :2].mean(0)))
        return float(hip[1] + 1.8 * torso)
    return float(box[3])


#: Limbs of the skeleton gate (mediapipe landmark pairs).
_LIMBS = ((11, 13), (13, 15), (15, 19), (12, 14), (14, 16), (16, 20), (23, 25), (25, 27), (27, 29), (29, 31),
          (27, 31), (24, 26), (26, 28), (28, 30), (30, 32), (28, 32), (11, 12), (23, 24), (11, 23), (12, 24))


def _torso_length(keypoints: np.ndarray) -> float:
    """Distance from the shoulder midpoint to the hip midpoint (pixels)."""
    kp = np.asarray(keypoints, np.float64)
    return float(np.linalg.norm(kp[[11, 12], :2].mean(0) - kp[[23, 24], :2].mean(0)))


def skeleton_gate(keypoints: np.ndarray, shape: tuple[int, int], origin: tuple[int, int] = (0, 0),
                  radius: float = 0.5) -> np.ndarray:
    """Where a person's pixels can be, from its 33 landmarks: the filled torso, thick limbs and a head disc,
    ``radius`` torso lengths (shoulder midpoint to hip midpoint) thick, in a region of ``shape`` (h, w)
    starting at pixel ``origin``. Returns float32 [h, w] of 0 / 1.

    Every landmark counts, visible or not (BlazePose places hidden ones plausibly): the gate only removes
    segmentation leaking onto things far from the body (a couch next to a seated actor), while overlaps
    between people are left to :func:`resolve_overlaps`.
    """
    import cv2

    h, w = shape
    kp = np.asarray(keypoints, np.float64)[:, :2] - np.asarray(origin, np.float64)
    r = max(1, int(round(radius * max(_torso_length(keypoints), 8.0))))
    sub = 4  # 1/16 pixel precision for cv2's shift argument
    P = lambda p: (int(round((p[0] - 0.5) * 16)), int(round((p[1] - 0.5) * 16)))  # noqa: E731
    g = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(g, np.array([P(kp[i]) for i in (11, 12, 24, 23)], np.int32), 1, cv2.LINE_8, sub)
    for a, b in _LIMBS:
        cv2.line(g, P(kp[a]), P(kp[b]), 1, 2 * r, cv2.LINE_8, sub)
    head = kp[[0, 7, 8]].mean(0)
    cv2.circle(g, P(head), int(round(1.5 * r * 16)), 1, -1, cv2.LINE_8, sub)
    cv2.line(g, P(kp[[11, 12]].mean(0)), P(head), 1, 2 * r, cv2.LINE_8, sub)
    return g.astype(np.float32)


def resolve_overlaps(probs: Sequence[np.ndarray], origins: Sequence[tuple[int, int]], depth_keys: Sequence[float],
                     shape: tuple[int, int], threshold: float = 0.5) -> np.ndarray:
    """One instance map from per-person segmentation probabilities.

    probs[k] [h_k, w_k] covers pixels ``origin[k] = (x0, y0)`` onwards (clipped to the image); person k
    claims the pixels where its probability >= ``threshold``. Where several claim a pixel, the one with the
    largest ``depth_keys`` (nearest, :func:`depth_order_key`) wins; equal keys go to the higher probability.
    Returns [H, W] uint8 (uint16 above 255 people): 0 background, k + 1 person k.
    """
    H, W = shape
    n = len(probs)
    out = np.zeros((H, W), np.uint8 if n < 256 else np.uint16)
    best = np.full((H, W), -np.inf)
    best_p = np.zeros((H, W))
    for k in range(n):
        p = np.asarray(probs[k], np.float64)
        x0, y0 = origins[k]
        ys0, xs0 = max(y0, 0), max(x0, 0)
        ys1, xs1 = min(y0 + p.shape[0], H), min(x0 + p.shape[1], W)
        if ys1 <= ys0 or xs1 <= xs0:
            continue
        p = p[ys0 - y0 : ys1 - y0, xs0 - x0 : xs1 - x0]
        key = float(depth_keys[k])
        reg = (slice(ys0, ys1), slice(xs0, xs1))
        claim = (p >= threshold) & ((key > best[reg]) | ((key == best[reg]) & (p > best_p[reg])))
        out[reg][claim] = k + 1
        best[reg][claim] = key
        best_p[reg][claim] = p[claim]
    return out


def _check_model(complexity: int) -> None:
    import mediapipe as mp

    if complexity not in _MODEL_FILES:
        raise ValueError(f"model_complexity must be 0, 1 or 2, not {complexity}")
    path = Path(mp.__file__).parent / "modules" / "pose_landmark" / _MODEL_FILES[complexity]
    if not path.is_file():
        raise FileNotFoundError(
            f"BlazePose model_complexity={complexity} needs {path.name}, which mediapipe does not bundle "
            "(it would download it); use model_complexity=1, the bundled 'full' model"
        )


def _box_of(points: np.ndarray) -> np.ndarray:
    return np.array([points[:, 0].min(), points[:, 1].min(), points[:, 0].max(), points[:, 1].max()], np.float64)


def _mask_box(mask: np.ndarray, origin: tuple[int, int]) -> np.ndarray | None:
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    x0, y0 = origin
    return np.array([xs.min() + x0, ys.min() + y0, xs.max() + 1 + x0, ys.max() + 1 + y0], np.float64)


def _union_box(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    if b is None:
        return a
    return np.array([min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])])


def _pad_box(box: np.ndarray, pad: float, W: int, H: int, square: bool = False) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if square:
        cx, cy, s = 0.5 * (x0 + x1), 0.5 * (y0 + y1), max(w, h)
        x0, x1, y0, y1 = cx - s / 2, cx + s / 2, cy - s / 2, cy + s / 2
        w = h = s
    x0, x1 = x0 - pad * w, x1 + pad * w
    y0, y1 = y0 - pad * h, y1 + pad * h
    return (int(max(0, np.floor(x0))), int(max(0, np.floor(y0))), int(min(W, np.ceil(x1))), int(min(H, np.ceil(y1))))


def _tiles(W: int, H: int) -> list[tuple[int, int, int, int]]:
    """Square tiles of side min(W, H) overlapping by half, across the longer side (none for a square)."""
    side = min(W, H)
    long = max(W, H)
    if long <= side * 1.2:
        return []
    n = int(np.ceil((long - side) / (side / 2))) + 1
    starts = np.linspace(0, long - side, n).round().astype(int)
    if W >= H:
        return [(int(s), 0, int(s) + side, H) for s in starts]
    return [(0, int(s), W, int(s) + side) for s in starts]


def _erase(image: np.ndarray, mask: np.ndarray, work_side: int = 160) -> None:
    """Replace the ``mask`` pixels of ``image`` (in place) by the surrounding background: Telea inpainting
    at low resolution (about ``work_side`` pixels on the longer side), upsampled. A flat colour would leave
    person-shaped silhouettes that the person detector still fires on."""
    import cv2

    if not mask.any():
        return
    H, W = mask.shape
    s = min(1.0, work_side / max(H, W))
    w, h = max(1, int(round(W * s))), max(1, int(round(H * s)))
    small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    msmall = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_AREA) > 0
    msmall = cv2.dilate(msmall.astype(np.uint8), np.ones((3, 3), np.uint8))
    filled = cv2.inpaint(small, msmall, 3, cv2.INPAINT_TELEA)
    up = cv2.resize(filled, (W, H), interpolation=cv2.INTER_LINEAR)
    image[mask] = up[mask]


class PeopleEstimator:
    """Per-frame people finder holding the mediapipe graphs (creating them is slow: keep one estimator for a
    whole clip). Use as a context manager or call :meth:`close`."""

    def __init__(self, cfg: PeopleConfig | None = None):
        import cv2
        import mediapipe as mp

        self.cfg = cfg = cfg or PeopleConfig()
        _check_model(cfg.model_complexity)
        pose_args = dict(
            static_image_mode=True,
            model_complexity=cfg.model_complexity,
            enable_segmentation=True,
            min_detection_confidence=cfg.detection_confidence,
        )
        self._pose_full = mp.solutions.pose.Pose(**pose_args)
        self._pose_crop = mp.solutions.pose.Pose(**pose_args)
        self._face = (
            mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False,
                                            min_detection_confidence=0.5)
            if cfg.faces else None
        )
        self._hog = None
        if cfg.use_hog:
            self._hog = cv2.HOGDescriptor()
            self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def close(self) -> None:
        for obj in (self._pose_full, self._pose_crop, self._face):
            if obj is not None:
                obj.close()
        self._pose_full = self._pose_crop = self._face = None

    def __enter__(self) -> "PeopleEstimator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- one Pose call -----------------------------------------------------------------------------------
    def _run_pose(self, pose, image: np.ndarray, origin: tuple[int, int], size: tuple[int, int], source: str
                  ) -> PersonObservation | None:
        """Pose on ``image``: the frame region of ``size`` (h, w) pixels starting at pixel ``origin``
        (x0, y0), possibly resized."""
        import cv2

        cfg = self.cfg
        res = pose.process(np.ascontiguousarray(image))
        if res.pose_landmarks is None:
            return None
        h0, w0 = size
        lm = np.array([[p.x, p.y, p.visibility] for p in res.pose_landmarks.landmark], np.float64)
        kp = np.empty_like(lm)
        kp[:, 0] = lm[:, 0] * w0 + origin[0]
        kp[:, 1] = lm[:, 1] * h0 + origin[1]
        kp[:, 2] = lm[:, 2]
        vis = kp[BODY_LANDMARKS, 2]
        if np.count_nonzero(vis >= cfg.visibility_threshold) < cfg.min_visible_joints:
            return None
        world = np.zeros((MP_NUM_LANDMARKS, 3))
        if res.pose_world_landmarks is not None:
            world = np.array([[p.x, p.y, p.z] for p in res.pose_world_landmarks.landmark], np.float64)
        prob = res.segmentation_mask
        prob = np.zeros((h0, w0), np.float32) if prob is None else np.asarray(prob, np.float32)
        if prob.shape != (h0, w0):
            prob = cv2.resize(prob, (w0, h0), interpolation=cv2.INTER_AREA if prob.shape[0] > h0 else cv2.INTER_LINEAR)
        if cfg.skeleton_gate > 0:
            prob = prob * skeleton_gate(kp, (h0, w0), origin, cfg.skeleton_gate)
        seen = kp[:, 2] >= cfg.visibility_threshold
        box = _union_box(_mask_box(prob >= cfg.mask_threshold, origin), _box_of(kp[seen, :2]) if seen.any() else None)
        return PersonObservation(box=box, keypoints=kp, world=world, prob=prob, origin=origin,
                                 score=float(vis.mean()), source=source)

    def _is_new(self, person: PersonObservation, found: list[PersonObservation], erased: np.ndarray) -> bool:
        """False when ``person`` is someone already ``found`` again (body keypoints within ``duplicate_dist``
        box diagonals, or box IoU > 0.7 when too few keypoints are confident in both), or a remnant: more
        than ``max_erased_overlap`` of its mask lies on pixels erased for the people found before."""
        cfg = self.cfg
        diag = max(float(np.hypot(person.box[2] - person.box[0], person.box[3] - person.box[1])), 1.0)
        a = person.keypoints[BODY_LANDMARKS]
        for other in found:
            b = other.keypoints[BODY_LANDMARKS]
            both = (a[:, 2] >= cfg.visibility_threshold) & (b[:, 2] >= cfg.visibility_threshold)
            if both.sum() >= 3:
                if np.linalg.norm(a[both, :2] - b[both, :2], axis=1).mean() < cfg.duplicate_dist * diag:
                    return False
            elif box_iou(person.box, other.box)[0, 0] > 0.7:
                return False
        if found and cfg.max_erased_overlap < 1.0:
            x0, y0 = person.origin
            h, w = person.prob.shape
            mine = person.prob >= cfg.mask_threshold
            n = np.count_nonzero(mine)
            if n and np.count_nonzero(mine & erased[y0 : y0 + h, x0 : x0 + w]) > cfg.max_erased_overlap * n:
                return False
        return True

    def _accept(self, person: PersonObservation, found: list[PersonObservation], erased: np.ndarray) -> None:
        found.append(person)
        erased |= self._person_mask(person, erased.shape)

    def _hog_boxes(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        H, W = frame.shape[:2]
        s = min(1.0, self.cfg.hog_max_side / max(H, W))
        img = frame
        if s < 1:
            img = cv2.resize(frame, (int(round(W * s)), int(round(H * s))), interpolation=cv2.INTER_AREA)
        rects, weights = self._hog.detectMultiScale(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), winStride=(8, 8),
                                                    padding=(8, 8), scale=1.05)
        if len(rects) == 0:
            return np.zeros((0, 4))
        weights = np.asarray(weights).ravel()
        rects = np.asarray(rects, np.float64)[weights >= self.cfg.hog_threshold]
        boxes = np.c_[rects[:, :2], rects[:, :2] + rects[:, 2:]] / s
        return boxes

    def _search(self, frame: np.ndarray, box: np.ndarray, erased: np.ndarray, source: str
                ) -> PersonObservation | None:
        """Pose on the padded ``box`` of ``frame``, with the ``erased`` pixels (people already found) erased."""
        import cv2

        cfg = self.cfg
        H, W = frame.shape[:2]
        x0, y0, x1, y1 = _pad_box(box, cfg.crop_pad, W, H)
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        crop = frame[y0:y1, x0:x1].copy()
        _erase(crop, erased[y0:y1, x0:x1])
        scale = max(1.0, cfg.crop_min_size / max(crop.shape[:2]))
        size = crop.shape[:2]
        if scale > 1.0:
            crop = cv2.resize(crop, (int(round(crop.shape[1] * scale)), int(round(crop.shape[0] * scale))),
                              interpolation=cv2.INTER_LINEAR)
        return self._run_pose(self._pose_crop, crop, (x0, y0), size, source)

    def _person_mask(self, person: PersonObservation, shape: tuple[int, int], offset: tuple[int, int] = (0, 0)
                     ) -> np.ndarray:
        """Where ``person`` is in a region of the frame of size ``shape`` starting at pixel ``offset``: its
        segmentation mask plus its skeleton drawn ``erase_skeleton`` torso lengths thick, grown by
        ``erase_dilate`` torso lengths (at least one pixel)."""
        import cv2

        cfg = self.cfg
        H, W = shape
        m = skeleton_gate(person.keypoints, (H, W), offset, cfg.erase_skeleton).astype(np.uint8)
        x0, y0 = person.origin[0] - offset[0], person.origin[1] - offset[1]
        p = person.prob >= cfg.mask_threshold
        ys0, xs0 = max(y0, 0), max(x0, 0)
        ys1, xs1 = min(y0 + p.shape[0], H), min(x0 + p.shape[1], W)
        if ys1 > ys0 and xs1 > xs0:
            m[ys0:ys1, xs0:xs1] |= p[ys0 - y0 : ys1 - y0, xs0 - x0 : xs1 - x0]
        r = max(1, int(round(cfg.erase_dilate * _torso_length(person.keypoints))))
        m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
        return m > 0

    def _face_of(self, frame: np.ndarray, person: PersonObservation) -> None:
        import cv2

        cfg = self.cfg
        H, W = frame.shape[:2]
        face = person.keypoints[_FACE_LANDMARKS]
        seen = face[:, 2] >= cfg.visibility_threshold
        if seen.sum() < 3:
            return
        pts = face[seen, :2]
        centre = pts.mean(0)
        span = max(float(np.ptp(pts[:, 0])), float(np.ptp(pts[:, 1])), 1.0)
        # The 11 pose face landmarks span roughly the eyes-to-mouth region; the face is ~1.6x that.
        half = max(0.8 * span, 4.0)
        person.face_box = np.array([centre[0] - half, centre[1] - half * 1.1, centre[0] + half, centre[1] + half * 1.0])
        if self._face is None or 2 * half < cfg.face_min_size:
            return
        x0, y0, x1, y1 = _pad_box(np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half]),
                                  0.5, W, H, square=True)
        crop = frame[y0:y1, x0:x1]
        if crop.shape[0] < 8 or crop.shape[1] < 8:
            return
        h, w = crop.shape[:2]
        scale = max(1.0, 192 / max(h, w))
        if scale > 1.0:
            crop = cv2.resize(crop, (int(round(crop.shape[1] * scale)), int(round(crop.shape[0] * scale))),
                              interpolation=cv2.INTER_CUBIC)
        res = self._face.process(np.ascontiguousarray(crop))
        if not res.multi_face_landmarks:
            return
        lm = np.array([[p.x, p.y, p.z] for p in res.multi_face_landmarks[0].landmark], np.float64)
        out = np.empty_like(lm)
        out[:, 0] = lm[:, 0] * w + x0
        out[:, 1] = lm[:, 1] * h + y0
        out[:, 2] = lm[:, 2] * w
        # Keep it only if it is this person's face (its centre near the pose's face landmarks).
        if np.linalg.norm(out[:, :2].mean(0) - centre) > 1.5 * half:
            return
        person.face_landmarks = out
        person.face_box = _box_of(out[:, :2])

    def _peel(self, work: np.ndarray, region: tuple[int, int, int, int], found: list[PersonObservation],
              erased: np.ndarray) -> None:
        """Find people one by one in ``region`` (x0, y0, x1, y1) of ``work``, erasing each from ``work``."""
        x0, y0, x1, y1 = region
        pose = self._pose_full if (x0, y0, x1, y1) == (0, 0, work.shape[1], work.shape[0]) else self._pose_crop
        while len(found) < self.cfg.max_people:
            person = self._run_pose(pose, work[y0:y1, x0:x1], (x0, y0), (y1 - y0, x1 - x0), "peel")
            if person is None or not self._is_new(person, found, erased):
                return
            self._accept(person, found, erased)
            _erase(work, erased)

    # -- one frame ---------------------------------------------------------------------------------------
    def detect(self, frame: np.ndarray, hints: np.ndarray | None = None) -> tuple[list[PersonObservation], np.ndarray]:
        """The people in one RGB frame [H, W, 3] uint8. ``hints`` [K, 4]: boxes where someone is expected
        (a tracker's predictions). Returns (people, instance map [H, W]: 0 background, k + 1 person k)."""
        cfg = self.cfg
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frame must be [H, W, 3] uint8 RGB, got {frame.shape} {frame.dtype}")
        H, W = frame.shape[:2]
        found: list[PersonObservation] = []
        erased = np.zeros((H, W), bool)
        work = frame.copy()
        for region in [(0, 0, W, H)] + (_tiles(W, H) if cfg.tiles else []):
            self._peel(work, region, found, erased)
            if len(found) >= cfg.max_people:
                break
        searches: list[tuple[np.ndarray, str]] = []
        if cfg.use_track_hints and hints is not None:
            searches += [(b, "track") for b in np.asarray(hints).reshape(-1, 4)]
        if self._hog is not None and len(found) < cfg.max_people:
            searches += [(b, "hog") for b in self._hog_boxes(frame)]
        for box, source in searches:
            if len(found) >= cfg.max_people:
                break
            if found and box_iou(box, np.stack([p.box for p in found])).max() > 0.5:
                continue
            person = self._search(frame, box, erased, source)
            if person is not None and self._is_new(person, found, erased):
                self._accept(person, found, erased)
        keys = [depth_order_key(p.keypoints, p.box, cfg.visibility_threshold) for p in found]
        ids = resolve_overlaps([p.prob for p in found], [p.origin for p in found], keys, (H, W), cfg.mask_threshold)
        for k, p in enumerate(found):
            p.box = _union_box(_mask_box(ids == k + 1, (0, 0)), p.box)
            if cfg.faces:
                self._face_of(frame, p)
        return found, ids


def _appearance(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Colour histogram of the masked pixels (HSV: 12 hue x 4 saturation x 4 value bins), [192]."""
    import cv2

    if not mask.any():
        return np.zeros(192, np.float32)
    hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], mask.astype(np.uint8), [12, 4, 4], [0, 180, 0, 256, 0, 256])
    return hist.ravel().astype(np.float32)


def _shot_runs(shot_ids: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of equal shot ids."""
    cuts = np.flatnonzero(np.diff(shot_ids) != 0) + 1
    edges = np.r_[0, cuts, len(shot_ids)]
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def _track_box(person: PersonObservation, visibility_threshold: float) -> np.ndarray:
    """The box the tracker follows: around the confident landmarks (a segmentation that leaks onto the
    furniture moves the mask box, not this one); the output box when fewer than 3 are confident."""
    kp = person.keypoints
    seen = kp[:, 2] >= visibility_threshold
    return _box_of(kp[seen, :2]) if seen.sum() >= 3 else person.box


def _keep_tracks(seen: dict[int, list], cfg: PeopleConfig, shot_length: int) -> dict[int, int]:
    """Stitch a shot's tracklets (:func:`~showmaker.estimate.people_track.stitch_tracklets`) and keep the
    tracks seen in at least ``min_track_frames`` frames and in at least ``min_track_fill`` of the frames
    of their span. Returns tracklet id -> track (its chain's first tracklet) for the kept ones."""
    if not seen:
        return {}
    frames = {t: np.array([o[0] for o in obs]) for t, obs in seen.items()}
    boxes = {t: np.stack([o[1] for o in obs]) for t, obs in seen.items()}
    apps = {t: np.sum([o[2] for o in obs], axis=0) for t, obs in seen.items()}
    root = stitch_tracklets(frames, boxes, apps, cfg.stitch) if cfg.stitch is not None else {t: t for t in seen}
    members: dict[int, list[int]] = {}
    for t, r in root.items():
        members.setdefault(r, []).append(t)
    keep = {}
    for r, ts in members.items():
        fs = np.concatenate([frames[t] for t in ts])
        span = fs.max() - fs.min() + 1
        if len(fs) >= min(cfg.min_track_frames, max(1, shot_length // 2)) and len(fs) >= cfg.min_track_fill * span:
            keep.update({t: r for t in ts})
    return keep


def estimate_people(frames: np.ndarray, shot_ids: np.ndarray, cfg: PeopleConfig | None = None,
                    progress: Callable[[int, int], None] | None = None) -> PeopleTracks:
    """Person masks, keypoints and faces of every frame, tracked within each shot.

    frames [F, H, W, 3] uint8 RGB (an array or any sequence of frames); shot_ids [F] (frames of a shot are
    consecutive; every run of equal ids is tracked on its own). ``progress(done, total)`` is called after
    every frame. Track ids are new in every shot; linking them across cuts is the ShotMatcher's job.
    """
    cfg = cfg or PeopleConfig()
    shot_ids = np.asarray(shot_ids)
    F = len(frames)
    if shot_ids.shape != (F,):
        raise ValueError(f"shot_ids must have one entry per frame ({F}), got shape {shot_ids.shape}")
    if F == 0:
        raise ValueError("no frames")
    H, W = np.asarray(frames[0]).shape[:2]
    per_frame: list[tuple[list[PersonObservation], np.ndarray, np.ndarray]] = []
    kept_tracks: list[tuple[int, int, int]] = []  # (run index, local track id, shot id)
    local_to_global: list[dict[int, int]] = []
    with PeopleEstimator(cfg) as est:
        for r, (a, b) in enumerate(_shot_runs(shot_ids)):
            tracker = ShotTracker(cfg.tracker)
            seen: dict[int, list] = {}
            for f in range(a, b):
                frame = np.asarray(frames[f])
                if frame.shape[:2] != (H, W):
                    raise ValueError(f"frame {f} is {frame.shape[:2]}, frame 0 is {(H, W)}")
                hints = tracker.predicted_boxes(f)[1] if cfg.use_track_hints else None
                people, ids = est.detect(frame, hints)
                boxes = np.zeros((0, 4))
                if people:
                    boxes = np.stack([_track_box(p, cfg.visibility_threshold) for p in people])
                kps = np.stack([p.keypoints for p in people]) if people else np.zeros((0, 33, 3))
                apps = np.stack([_appearance(frame, ids == k + 1) for k in range(len(people))]) if people else None
                tids = tracker.update(f, boxes, kps, apps)
                per_frame.append((people, ids, tids))
                for k, tid in enumerate(tids):
                    seen.setdefault(int(tid), []).append((f, boxes[k], apps[k]))
                if progress is not None:
                    progress(f + 1, F)
            keep = _keep_tracks(seen, cfg, b - a)
            roots = sorted(set(keep.values()))
            order = {root: len(kept_tracks) + i for i, root in enumerate(roots)}
            kept_tracks += [(r, root, int(shot_ids[a])) for root in roots]
            local_to_global.append({tid: order[root] for tid, root in keep.items()})

    N = len(kept_tracks)
    runs = _shot_runs(shot_ids)
    run_of_frame = np.concatenate([np.full(b - a, r) for r, (a, b) in enumerate(runs)])
    out = PeopleTracks(
        masks=np.zeros((F, H, W), np.uint8 if N < 256 else np.uint16),
        keypoints2d=np.zeros((N, F, MP_NUM_LANDMARKS, 3), np.float32),
        world_landmarks=np.zeros((N, F, MP_NUM_LANDMARKS, 3), np.float32),
        boxes=np.zeros((N, F, 4), np.float32),
        present=np.zeros((N, F), bool),
        scores=np.zeros((N, F), np.float32),
        shot_of_track=np.array([s for _, _, s in kept_tracks], dtype=shot_ids.dtype if N else np.int64),
        face_found=np.zeros((N, F), bool),
        face_boxes=np.zeros((N, F, 4), np.float32),
        face_mesh_found=np.zeros((N, F), bool),
        face_landmarks=np.zeros((N, F, NUM_FACE_LANDMARKS, 3), np.float32),
    )
    for f, (people, ids, tids) in enumerate(per_frame):
        mapping = local_to_global[run_of_frame[f]]
        lut = np.zeros(len(people) + 1, out.masks.dtype)
        for k, (p, tid) in enumerate(zip(people, tids)):
            n = mapping.get(int(tid))
            if n is None:
                continue
            lut[k + 1] = n + 1
            out.keypoints2d[n, f] = p.keypoints
            out.world_landmarks[n, f] = p.world
            out.boxes[n, f] = p.box
            out.present[n, f] = True
            out.scores[n, f] = p.score
            if p.face_box is not None:
                out.face_found[n, f] = True
                out.face_boxes[n, f] = p.face_box
            if p.face_landmarks is not None:
                out.face_mesh_found[n, f] = True
                out.face_landmarks[n, f] = p.face_landmarks
        out.masks[f] = lut[ids]
    if cfg.left_right_swap_cost is not None:
        for n in range(N):
            fs = np.flatnonzero(out.present[n])
            swap = fs[consistent_left_right(out.keypoints2d[n, fs], LEG_PAIRS, cfg.left_right_swap_cost,
                                            cfg.visibility_threshold)]
            out.keypoints2d[n, swap] = swap_limbs(out.keypoints2d[n, swap], LEG_PAIRS)
            out.world_landmarks[n, swap] = swap_limbs(out.world_landmarks[n, swap], LEG_PAIRS)
    return out
