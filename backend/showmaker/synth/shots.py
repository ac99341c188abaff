"""Shots and cameras of a synthetic clip: which camera films each frame, and its K and viewmat."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import fov_to_K, look_at_viewmat
from .spec import SceneSpec

__all__ = ["CameraTrack", "camera_track"]


@dataclass
class CameraTrack:
    """Per-frame cameras of a clip (F frames, OpenCV convention).

    K: [F, 3, 3] intrinsics in pixels; viewmats: [F, 4, 4] world-to-camera; shot_ids: [F] int shot index;
    camera_ids: [F] int index into ``spec.cameras``; cuts: the first frame of every shot but the first.
    """

    K: np.ndarray
    viewmats: np.ndarray
    shot_ids: np.ndarray
    camera_ids: np.ndarray
    cuts: list[int]


def camera_track(spec: SceneSpec) -> CameraTrack:
    """Cameras per frame: each camera moves linearly from (eye, target) at frame 0 to (eye_end, target_end)
    at the last frame, and each frame takes the camera of its shot."""
    F = spec.frame_count
    shot_ids = np.repeat(np.arange(len(spec.shots)), [s.frames for s in spec.shots])
    names = [c.name for c in spec.cameras]
    camera_ids = np.array([names.index(spec.shots[s].camera) for s in shot_ids])
    K = np.empty((F, 3, 3))
    viewmats = np.empty((F, 4, 4))
    for f in range(F):
        cam = spec.cameras[camera_ids[f]]
        a = f / max(F - 1, 1)
        eye = (1 - a) * np.asarray(cam.eye) + a * np.asarray(cam.eye_end)
        target = (1 - a) * np.asarray(cam.target) + a * np.asarray(cam.target_end)
        viewmats[f] = look_at_viewmat(eye, target)
        K[f] = fov_to_K(cam.fov_deg, spec.width, spec.height)
    cuts = [int(f) for f in np.flatnonzero(np.diff(shot_ids)) + 1]
    return CameraTrack(K, viewmats, shot_ids, camera_ids, cuts)
