"""Background images of the set: where their cameras stand (no Blender needed).

The TV-show setting gives Structure-from-Motion extra photographs of the same set (other episodes) so that shots
which share too little to be matched directly (a wide shot and a close-up from another side) are connected
through them. The synthetic clip places ``spec.background.count`` such cameras automatically:

- the *focus* is the mean of the clip cameras' targets (start and end of their dollies);
- the eyes spread over the clip cameras' directions as seen from the focus (their azimuth range, widened by
  ``margin_deg`` on each side) and over their distances from it, at ``eye_height`` metres (give or take
  ``height_jitter``), inside the room or on the apron in front of its open side;
- each looks at the clip cameras' targets interpolated by azimuth (the wide shot's target next to the wide
  camera, the close-up's next to the close camera), moved by up to 0.3 m so that the views differ.

Views are stratified over the azimuth range (one per slot, jittered within it) and alternate between near and
far, so that neighbouring views overlap and the chain goes from every clip camera's viewpoint to every other's,
at scales in between.
"""
from __future__ import annotations

import math

import numpy as np

from ..geometry import fov_to_K, look_at_viewmat
from .spec import SceneSpec
from .stage import CAMERA_APRON

__all__ = ["background_cameras", "background_size"]

#: Eyes keep this far (metres) from the walls and the end of the apron.
WALL_MARGIN = 0.3
#: How far (metres) a view's target may move from the interpolated clip target, horizontally.
TARGET_JITTER = 0.3


def background_size(spec: SceneSpec) -> tuple[int, int]:
    """(width, height) of the background images: ``spec.background.resolution`` or the clip's."""
    return spec.background.resolution or (spec.width, spec.height)


def _clip_views(spec: SceneSpec) -> list[tuple[np.ndarray, np.ndarray]]:
    """(eye, target) at the start and the end of every camera that films a shot."""
    used = {s.camera for s in spec.shots}
    views = []
    for cam in spec.cameras:
        if cam.name in used:
            views.append((np.asarray(cam.eye), np.asarray(cam.target)))
            views.append((np.asarray(cam.eye_end), np.asarray(cam.target_end)))
    return views


def background_cameras(spec: SceneSpec) -> tuple[np.ndarray, np.ndarray]:
    """K [B, 3, 3] and world-to-camera viewmats [B, 4, 4] (OpenCV) of the spec's B background images."""
    bg = spec.background
    B = bg.count
    W, H = background_size(spec)
    if B == 0:
        return np.zeros((0, 3, 3)), np.zeros((0, 4, 4))
    views = _clip_views(spec)
    eyes = np.array([e for e, _ in views])
    targets = np.array([t for _, t in views])
    focus = targets.mean(0)
    rel = eyes[:, :2] - focus[:2]
    # Azimuths relative to the mean viewing direction (no wrap-around inside the range).
    mean_dir = rel.sum(0)
    base = math.atan2(mean_dir[1], mean_dir[0])
    az = np.array([(math.atan2(y, x) - base + math.pi) % (2 * math.pi) - math.pi for x, y in rel])
    dist = np.linalg.norm(rel, axis=1)
    margin = math.radians(bg.margin_deg)
    a_lo, a_hi = az.min() - margin, az.max() + margin
    d_lo, d_hi = dist.min(), dist.max()
    order = np.argsort(az)
    rng = np.random.default_rng([spec.seed, 1001])
    st = spec.stage
    x_lim = st.width / 2 - WALL_MARGIN
    y_lo, y_hi = -st.depth / 2 - CAMERA_APRON + WALL_MARGIN, st.depth / 2 - WALL_MARGIN
    K = fov_to_K(bg.fov_deg, W, H)
    Ks, viewmats = np.empty((B, 3, 3)), np.empty((B, 4, 4))
    for i in range(B):
        a = a_lo + (a_hi - a_lo) * (i + rng.uniform(0.25, 0.75)) / B
        # Near and far in turn (a low-discrepancy sequence), so that every stretch of azimuth has both.
        u = (0.5 + i * 0.6180339887) % 1.0
        d = d_lo + (d_hi - d_lo) * u
        direction = np.array([math.cos(base + a), math.sin(base + a)])
        eye_xy = focus[:2] + d * direction
        # Stay inside the room (or on the apron in front of it): pull the eye towards the focus if needed.
        for _ in range(50):
            if abs(eye_xy[0]) <= x_lim and y_lo <= eye_xy[1] <= y_hi:
                break
            d *= 0.95
            eye_xy = focus[:2] + d * direction
        z = bg.eye_height + bg.height_jitter * rng.uniform(-1.0, 1.0)
        target = np.array([np.interp(a, az[order], targets[order, k]) for k in range(3)])
        target[:2] += rng.uniform(-TARGET_JITTER, TARGET_JITTER, 2)
        Ks[i] = K
        viewmats[i] = look_at_viewmat(np.r_[eye_xy, z], target)
    return Ks, viewmats
