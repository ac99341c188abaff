"""Shot detection (METHOD section 1, "Shots"): find the cuts of a clip with PySceneDetect 0.7.

The paper names no detector; ours is scenedetect's ``AdaptiveDetector`` (a rolling-average content detector that
tolerates camera motion), with its ``HistogramDetector`` and plain ``ContentDetector`` as options. Frames are fed
to the detector one by one, whether they come from memory or from a video file, so both paths give the same
answer for the same frames.

Convention: ``shot_ids`` [F] int, 0 for the first shot, +1 at every cut; a *cut* is the index of the first frame
of a new shot (so frame 0 is never a cut).
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "ShotConfig",
    "ShotDetectionError",
    "cut_precision_recall",
    "cuts_from_shot_ids",
    "detect_shots",
    "shot_ids_from_cuts",
]

DETECTORS = ("adaptive", "histogram", "content")


class ShotDetectionError(ValueError):
    """The input cannot be searched for cuts (empty, wrong shape or dtype, unreadable video)."""


@dataclass(frozen=True)
class ShotConfig:
    """Settings of :func:`detect_shots` (all "ours": the paper gives none).

    detector: ``"adaptive"`` (scenedetect ``AdaptiveDetector``: a frame-difference score compared with the mean
        of its ``window_width`` neighbours on each side, so a steady pan or dolly does not fire), ``"histogram"``
        (``HistogramDetector``: Y-channel histogram distance, blind to motion within a view but also to cuts
        between views with similar colours) or ``"content"`` (``ContentDetector``: fixed threshold on the HSV
        frame difference).
    adaptive_threshold: ratio of a frame's score to its neighbours' mean that marks a cut (adaptive).
    min_content_val: the frame's own HSV difference must also exceed this (adaptive; 0..255 scale).
    window_width: neighbours on each side in the rolling average (adaptive).
    content_threshold: HSV difference threshold (content).
    histogram_threshold: histogram distance threshold, 0..1 (histogram).
    min_shot_len: frames; no cut is reported closer than this to the previous cut or to the clip's start.
        TV shots shorter than half a second are rare; 6 frames keeps short synthetic shots.
    luma_only: use only the brightness channel (adaptive / content).
    target_width: frames wider than this are downscaled first (as scenedetect does with videos: to at least
        this width, by a factor ``width / target_width``); 0 keeps full resolution.
    """

    detector: str = "adaptive"
    adaptive_threshold: float = 3.0
    min_content_val: float = 15.0
    window_width: int = 2
    content_threshold: float = 27.0
    histogram_threshold: float = 0.2
    min_shot_len: int = 6
    luma_only: bool = False
    target_width: int = 256


def _make_detector(cfg: ShotConfig):
    from scenedetect import AdaptiveDetector, ContentDetector, HistogramDetector

    if cfg.detector == "adaptive":
        return AdaptiveDetector(
            adaptive_threshold=cfg.adaptive_threshold,
            min_scene_len=cfg.min_shot_len,
            window_width=cfg.window_width,
            min_content_val=cfg.min_content_val,
            luma_only=cfg.luma_only,
        )
    if cfg.detector == "histogram":
        return HistogramDetector(threshold=cfg.histogram_threshold, min_scene_len=cfg.min_shot_len)
    if cfg.detector == "content":
        return ContentDetector(threshold=cfg.content_threshold, min_scene_len=cfg.min_shot_len,
                               luma_only=cfg.luma_only)
    raise ValueError(f"ShotConfig.detector: unknown detector {cfg.detector!r}; expected one of {', '.join(DETECTORS)}")


def _iter_video_bgr(path: Path):
    """Frames of a video file as BGR uint8 arrays, decoded by scenedetect's OpenCV backend."""
    from scenedetect import VideoOpenFailure, open_video

    if not path.is_file():
        raise ShotDetectionError(f"detect_shots: no such video file: {path}")
    try:
        video = open_video(str(path))
    except VideoOpenFailure as exc:
        raise ShotDetectionError(f"detect_shots: cannot open video {path}: {exc}") from exc
    while True:
        frame = video.read()
        if frame is False or frame is None:
            return
        yield frame


def _iter_array_bgr(frames: np.ndarray):
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ShotDetectionError(
            f"detect_shots: frames must be a uint8 array [F, H, W, 3] (RGB); got {frames.dtype} {frames.shape}")
    for frame in frames:
        yield np.ascontiguousarray(frame[..., ::-1])  # scenedetect works on OpenCV's BGR


def detect_shots(frames: np.ndarray | str | Path, cfg: ShotConfig = ShotConfig()) -> np.ndarray:
    """Detect the cuts of a clip and number its shots.

    Args:
        frames: [F, H, W, 3] uint8 RGB frames, or the path of a video file (decoded with scenedetect's OpenCV
            backend; every decoded frame counts).
        cfg: detector and thresholds, see :class:`ShotConfig`.
    Returns:
        shot_ids: [F] int64, non-decreasing, 0 for the first shot, +1 at each cut.
    Raises:
        ShotDetectionError: empty or malformed frames, unreadable video.
    """
    detector = _make_detector(cfg)
    source = _iter_video_bgr(Path(frames)) if isinstance(frames, (str, Path)) else _iter_array_bgr(frames)
    from scenedetect import FrameTimecode

    fps = Fraction(24)  # timecodes only count frames here; the rate does not change any result
    n = 0
    cuts: list[int] = []
    last = None
    for frame in source:
        if cfg.target_width and frame.shape[1] > cfg.target_width:
            factor = frame.shape[1] / float(cfg.target_width)
            size = (max(1, round(frame.shape[1] / factor)), max(1, round(frame.shape[0] / factor)))
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)
        last = frame
        cuts += [tc.frame_num for tc in detector.process_frame(FrameTimecode(n, fps), frame)]
        n += 1
    if n == 0:
        raise ShotDetectionError("detect_shots: the clip has no frames")
    # The adaptive detector decides about a frame only once it has seen `window_width` frames after it; repeat the
    # last frame (a zero difference) so that cuts in the clip's last frames are decided too. Repeats never cut.
    for k in range(getattr(detector, "event_buffer_length", 0)):
        cuts += [tc.frame_num for tc in detector.process_frame(FrameTimecode(n + k, fps), last)]
    cuts += [tc.frame_num for tc in detector.post_process(FrameTimecode(n - 1, fps))]
    return shot_ids_from_cuts([c for c in cuts if 0 < c < n], n)


def shot_ids_from_cuts(cuts, n_frames: int) -> np.ndarray:
    """Cut frames (first frames of new shots) -> shot_ids [n_frames] int64."""
    ids = np.zeros(n_frames, dtype=np.int64)
    for c in sorted(set(int(c) for c in cuts)):
        if not 0 < c < n_frames:
            raise ValueError(f"shot_ids_from_cuts: cut {c} is outside 1..{n_frames - 1}")
        ids[c:] += 1
    return ids


def cuts_from_shot_ids(shot_ids) -> np.ndarray:
    """shot_ids [F] -> the cut frames [C] int64: every frame whose shot id differs from the previous frame's."""
    shot_ids = np.asarray(shot_ids).reshape(-1)
    return (np.flatnonzero(shot_ids[1:] != shot_ids[:-1]) + 1).astype(np.int64)


def cut_precision_recall(pred_cuts, gt_cuts, tolerance: int = 1) -> dict:
    """Precision and recall of detected cuts against ground truth, one-to-one within ``tolerance`` frames.

    Each true cut can be matched by at most one detection (greedy by frame distance). With no detection,
    precision is 1.0; with no true cut, recall is 1.0.
    Returns a dict: precision, recall, f1, tp, fp, fn, matches (list of (pred, gt) pairs).
    """
    pred = sorted(int(c) for c in pred_cuts)
    gt = sorted(int(c) for c in gt_cuts)
    pairs = sorted((abs(p - g), p, g) for p in pred for g in gt if abs(p - g) <= tolerance)
    used_p, used_g, matches = set(), set(), []
    for _, p, g in pairs:
        if p not in used_p and g not in used_g:
            used_p.add(p)
            used_g.add(g)
            matches.append((p, g))
    tp = len(matches)
    precision = tp / len(pred) if pred else 1.0
    recall = tp / len(gt) if gt else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": len(pred) - tp,
            "fn": len(gt) - tp, "matches": sorted(matches)}
