"""The default synthetic clip (generated once into the cache): its story, and that a real person detector
(mediapipe 0.10.21's bundled pose model) sees its actors as people."""
import numpy as np
import pytest
from PIL import Image

from showmaker.synth.video import count_video_frames

pytest.importorskip("bpy")
pytestmark = pytest.mark.slow

_SHOULDERS, _HIPS = (11, 12), (23, 24)  # mediapipe pose landmark indices


@pytest.fixture(scope="module")
def clip(default_clip):
    return default_clip


def test_default_clip_layout(clip):
    assert clip.frame_count == 72 and clip.frames[0].shape == (240, 320, 3)
    assert clip.fps == 24.0 and clip.actor_names == ["alice", "bob"]
    assert clip.cuts == [30, 48] and sorted(set(clip.shot_ids.tolist())) == [0, 1, 2]
    assert clip.camera_ids[0] == clip.camera_ids[-1] != clip.camera_ids[40]  # wide, close, back to wide
    assert count_video_frames(clip.video_path) == 72
    assert clip.meta["video_codec"] == "libx264"


def test_default_story_has_an_absent_actor_and_a_brief_occlusion(clip):
    A = len(clip.actor_names)
    pixels = np.stack([(clip.masks == a + 1).sum((1, 2)) for a in range(A)])  # [A, F]
    shots = sorted(set(clip.shot_ids.tolist()))
    # Some actor is missing from every frame of one shot but seen in the others.
    absent = [(a, s) for a in range(A) for s in shots if pixels[a, clip.shot_ids == s].max() == 0]
    assert absent
    a, s = absent[0]
    assert all(pixels[a, clip.shot_ids == t].min() > 100 for t in shots if t != s)
    # Some actor is hidden behind another for a few frames of a shot, and unoccluded in the rest of it.
    found = False
    for a in range(A):
        for s in shots:
            occ = clip.occluded_fraction[a, clip.shot_ids == s]
            hidden = np.flatnonzero(clip.shot_ids == s)[occ > 0.25]
            if len(hidden) and len(hidden) <= len(occ) // 2 and (occ < 0.1).sum() >= len(occ) // 3:
                f = hidden[0]
                box = np.floor(clip.joints2d[a, f]).astype(int)
                x0, y0 = box.min(0)
                x1, y1 = box.max(0) + 1
                others = clip.masks[f, max(y0, 0):y1, max(x0, 0):x1]
                found |= bool(((others > 0) & (others != a + 1)).sum() > 50)
    assert found


def _window(mask, pad=0.25):
    """The square window (y0, x0, side) around ``mask``'s box, padded by ``pad`` box heights."""
    ys, xs = np.nonzero(mask)
    side = int((ys.max() + 1 - ys.min()) * (1 + 2 * pad))
    cy, cx = (ys.min() + ys.max() + 1) // 2, (xs.min() + xs.max() + 1) // 2
    return cy - side // 2, cx - side // 2, side


def _crop(rgb, window, size=256):
    """The pixels of ``window`` (zero outside the frame), resized to ``size`` x ``size``."""
    y0, x0, side = window
    H, W = rgb.shape[:2]
    canvas = np.zeros((side, side, 3), dtype=np.uint8)
    sy0, sx0, sy1, sx1 = max(y0, 0), max(x0, 0), min(y0 + side, H), min(x0 + side, W)
    canvas[sy0 - y0: sy1 - y0, sx0 - x0: sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
    return np.asarray(Image.fromarray(canvas).resize((size, size), Image.BICUBIC))


def test_mediapipe_detects_the_actors(clip):
    mp_pose = pytest.importorskip("mediapipe").solutions.pose
    A = len(clip.actor_names)
    tried, detected, placed = np.zeros(A, int), np.zeros(A, int), np.zeros(A, int)
    with mp_pose.Pose(static_image_mode=True) as pose:
        for a in range(A):
            for f in range(clip.frame_count):
                mask = clip.masks[f] == a + 1
                if not (clip.smpl["present"][a, f] and clip.in_frame_fraction[a, f] == 1.0
                        and clip.occluded_fraction[a, f] < 0.02 and mask.any()):
                    continue
                ys, xs = np.nonzero(mask)
                box_h = ys.max() + 1 - ys.min()
                y0, x0, side = window = _window(mask)
                others = clip.masks[f, max(y0, 0): y0 + side, max(x0, 0): x0 + side]
                if box_h < 40 or ((others > 0) & (others != a + 1)).any():  # one person per crop
                    continue
                tried[a] += 1
                result = pose.process(_crop(clip.frames[f], window))
                if result.pose_landmarks is None:
                    continue
                detected[a] += 1
                lm = result.pose_landmarks.landmark
                pts = np.array([[lm[i].x * side + x0, lm[i].y * side + y0] for i in _SHOULDERS + _HIPS])
                margin = 0.1 * box_h
                in_box = ((pts[:, 0] >= xs.min() - margin) & (pts[:, 0] <= xs.max() + margin)
                          & (pts[:, 1] >= ys.min() - margin) & (pts[:, 1] <= ys.max() + margin)).all()
                gt_hips = clip.joints2d[a, f, [1, 2]].mean(0)
                close = np.linalg.norm(pts[2:].mean(0) - gt_hips) < 0.15 * box_h
                placed[a] += bool(in_box and close)
    assert (tried >= 10).all(), tried
    assert (detected >= 0.8 * tried).all(), f"mediapipe found a person in {detected} of {tried} crops per actor"
    assert (placed >= 0.8 * detected).all(), f"only {placed} of {detected} detections put hips and shoulders on the actor"
