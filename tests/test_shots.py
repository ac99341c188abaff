"""Shot detection: synthetic multi-shot sequences built by warping textured images (fast, deterministic).

The sequence has a hard cut between two similar views of the same room (same colours, shifted and zoomed), a cut
to a very different view, a steady pan and a dolly (zoom) that must not be cuts, and per-frame sensor noise.
"""
import cv2
import numpy as np
import pytest

from showmaker.estimate.shots import (
    ShotConfig,
    ShotDetectionError,
    cut_precision_recall,
    cuts_from_shot_ids,
    detect_shots,
    shot_ids_from_cuts,
)

H, W = 120, 160


def room_texture(seed: int, size=(480, 640), palette_shift: int = 0) -> np.ndarray:
    """A 'room' image: smooth colour gradients plus random blobs, bars and polygons (RGB uint8)."""
    rng = np.random.default_rng(seed)
    h, w = size
    base = rng.integers(0, 255, (4, 5, 3)).astype(np.uint8)
    img = cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(260):
        c = tuple(int((v + palette_shift) % 256) for v in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(4, 30))
        kind = rng.integers(3)
        if kind == 0:
            cv2.circle(img, (x, y), r, c, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(img, (x, y), (x + r, y + int(rng.integers(4, 40))), c, -1, cv2.LINE_AA)
        else:
            pts = (rng.integers(-r, r, (3, 2)) + [x, y]).astype(np.int32)
            cv2.fillPoly(img, [pts], c, cv2.LINE_AA)
    return img


def view(tex: np.ndarray, cx: float, cy: float, zoom: float = 1.0, angle: float = 0.0) -> np.ndarray:
    """A [H, W] camera view of ``tex`` centred on texture point (cx, cy), magnified by ``zoom``."""
    M = cv2.getRotationMatrix2D((cx, cy), angle, zoom)
    M[:, 2] += (W / 2 - cx, H / 2 - cy)
    return cv2.warpAffine(tex, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def synthetic_sequence(seed: int = 0):
    """Frames [F, H, W, 3] and the true cut frames of a 5-shot sequence with camera motion."""
    rng = np.random.default_rng(seed)
    room = room_texture(seed)
    other = room_texture(seed + 100, palette_shift=90)
    shots = []
    # 1: a locked-off wide shot with slight handheld jitter.
    shots.append([view(room, 260 + rng.normal(0, 0.4), 200 + rng.normal(0, 0.4), 1.0) for _ in range(14)])
    # 2: hard cut to a similar view of the same room (another camera: 25 px over, 20% closer, tilted 3 deg).
    shots.append([view(room, 285 + rng.normal(0, 0.4), 210, 1.2, 3.0) for _ in range(12)])
    # 3: cut back to the wide camera, which then pans right steadily (3 px per frame) for 24 frames.
    shots.append([view(room, 250 + 3.0 * i, 200, 1.0) for i in range(24)])
    # 4: cut to a very different view (another set), with a slow dolly in (zoom).
    shots.append([view(other, 320, 240, 1.0 + 0.01 * i) for i in range(16)])
    # 5: cut to a closer view of the first room in a fast pan left (9 px per frame, 6% of the width).
    shots.append([view(room, 500 - 9.0 * i, 300, 1.3) for i in range(14)])
    frames = np.concatenate([np.stack(s) for s in shots])
    noise = rng.normal(0, 2.0, frames.shape)
    frames = np.clip(frames + noise, 0, 255).astype(np.uint8)
    cuts = np.cumsum([len(s) for s in shots])[:-1]
    return frames, cuts


def test_cut_helpers_round_trip():
    ids = shot_ids_from_cuts([3, 7], 10)
    np.testing.assert_array_equal(ids, [0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(cuts_from_shot_ids(ids), [3, 7])
    np.testing.assert_array_equal(cuts_from_shot_ids(np.zeros(5, int)), [])
    with pytest.raises(ValueError):
        shot_ids_from_cuts([0], 5)


def test_precision_recall_with_tolerance():
    r = cut_precision_recall([10, 21, 40], [10, 20, 30], tolerance=1)
    assert (r["tp"], r["fp"], r["fn"]) == (2, 1, 1)
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == pytest.approx(2 / 3)
    # One detection cannot match two true cuts, and two detections cannot share one.
    r = cut_precision_recall([10, 11], [10], tolerance=1)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 1, 0)
    assert cut_precision_recall([], [])["f1"] == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_adaptive_detector_finds_cuts_and_ignores_camera_motion(seed):
    frames, cuts = synthetic_sequence(seed)
    shot_ids = detect_shots(frames, ShotConfig())
    assert shot_ids.shape == (len(frames),) and shot_ids.dtype == np.int64
    pred = cuts_from_shot_ids(shot_ids)
    r = cut_precision_recall(pred, cuts, tolerance=1)
    # Every cut (similar view, very different view) is found and the pans / dolly are not cut.
    assert r["recall"] == 1.0, (pred, cuts)
    assert r["precision"] == 1.0, (pred, cuts)
    # Cuts land exactly on the first frame of the new shot.
    np.testing.assert_array_equal(pred, cuts)


def test_cut_near_the_end_is_found():
    frames, _ = synthetic_sequence(0)
    # 14 wide frames, 6 close-up frames, 6 frames of the other set, then one frame of the last shot: the
    # cut on the very last frame is decided too (the detector's look-ahead is padded with repeats).
    frames = np.concatenate([frames[:20], frames[60:67]])
    pred = cuts_from_shot_ids(detect_shots(frames, ShotConfig()))
    assert list(pred) == [14, 20, 26]


def test_single_shot_has_no_cut_and_video_path_agrees(tmp_path):
    frames, cuts = synthetic_sequence(0)
    np.testing.assert_array_equal(detect_shots(frames[26:50]), np.zeros(24, int))
    # The same frames through a video file (lossless-ish MJPG at high quality) give the same cuts.
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 24, (W, H))
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 100)
    for f in frames:
        writer.write(np.ascontiguousarray(f[..., ::-1]))
    writer.release()
    ids = detect_shots(path)
    assert len(ids) == len(frames)
    np.testing.assert_array_equal(cuts_from_shot_ids(ids), cuts)


def test_histogram_detector_misses_same_room_cut_but_finds_new_set():
    """Documented behaviour: a colour histogram cannot see a cut between two views of one room."""
    frames, cuts = synthetic_sequence(0)
    pred = cuts_from_shot_ids(detect_shots(frames, ShotConfig(detector="histogram")))
    assert cuts[2] in pred  # the other set
    assert cuts[0] not in pred  # same room, same colours


def test_default_synthetic_clip_cuts_exact(default_clip):
    clip = default_clip
    frames = clip.frames[0:len(clip.frames)]
    np.testing.assert_array_equal(cuts_from_shot_ids(detect_shots(frames)), clip.cuts)
    np.testing.assert_array_equal(cuts_from_shot_ids(detect_shots(clip.path / "clip.mp4")), clip.cuts)


def test_bad_input_is_reported(tmp_path):
    with pytest.raises(ShotDetectionError, match="uint8"):
        detect_shots(np.zeros((3, 8, 8, 3), np.float32))
    with pytest.raises(ShotDetectionError, match="no frames"):
        detect_shots(np.zeros((0, 8, 8, 3), np.uint8))
    with pytest.raises(ShotDetectionError, match="no such video"):
        detect_shots(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="unknown detector"):
        detect_shots(np.zeros((3, 8, 8, 3), np.uint8), ShotConfig(detector="magic"))
