"""Level the stage: find the floor plane in the stage points and move the world so the floor is z = 0, Z up.

SfM and feed-forward geometry give a world frame with an arbitrary rotation. Blender (and artists) expect
Z up with the floor at z = 0. The "up" guess comes from the cameras (TV and web cameras are held upright:
the image's -y axis points roughly up); the floor is then the largest plane found by RANSAC whose normal is
within ``max_tilt_deg`` of that guess, lying below the cameras; a well-supported parallel plane below it
(the floor under a big table top) wins.

The result is a rigid transform ``T_level`` [4, 4] (no scale) applied as:
    points' = T_level @ points,    viewmat' = viewmat @ inverse(T_level).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class LevelConfig:
    """Settings of the floor search.

    inlier_frac: plane inlier threshold as a fraction of the scene radius.
    max_tilt_deg: the floor normal must be within this angle of the cameras' mean up vector.
    min_inlier_ratio: a parallel plane below the best-supported one is taken as the floor when it has at
        least this fraction of its support.
    iterations: RANSAC samples. seed: RNG seed (deterministic results).
    """

    inlier_frac: float = 0.01
    max_tilt_deg: float = 30.0
    min_inlier_ratio: float = 0.5
    iterations: int = 2000
    seed: int = 0


@dataclass
class FloorPlane:
    """The floor in the original world frame: unit ``normal`` [3] (pointing to the cameras' side),
    ``offset`` d with normal . x + d = 0, ``n_inliers``, and the levelling transform ``T_level`` [4, 4]."""

    normal: np.ndarray
    offset: float
    n_inliers: int
    T_level: np.ndarray


def cameras_up(viewmats: np.ndarray) -> np.ndarray:
    """Mean world-space 'up' of OpenCV cameras (their -y axes) [3], unit length. ``viewmats`` [C, 4, 4]."""
    up = -viewmats[:, 1, :3].mean(0)  # row 1 of R is the camera y axis in world coordinates
    n = np.linalg.norm(up)
    if n < 1e-6:
        raise ValueError("cameras disagree on 'up' (their y axes cancel out); cannot level the stage")
    return up / n


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation [3, 3] taking unit vector ``a`` to unit vector ``b``."""
    v = np.cross(a, b)
    c = float(np.dot(a, b))
    if c < -1 + 1e-12:  # opposite: rotate pi about any axis orthogonal to a
        axis = np.cross(a, [1.0, 0.0, 0.0])
        if np.linalg.norm(axis) < 1e-6:
            axis = np.cross(a, [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


def find_floor(points: np.ndarray, viewmats: np.ndarray, scene_radius: float, config: LevelConfig = LevelConfig()) -> FloorPlane:
    """Find the floor plane in ``points`` [N, 3] and the transform that levels it (see module docstring)."""
    points = np.asarray(points, dtype=np.float64)
    if len(points) < 3:
        raise ValueError(f"cannot find a floor in {len(points)} stage points (need at least 3)")
    up = cameras_up(viewmats)
    cam_centers = -np.einsum("cji,cj->ci", viewmats[:, :3, :3], viewmats[:, :3, 3])
    rng = np.random.default_rng(config.seed)
    thresh = config.inlier_frac * scene_radius
    cos_tilt = np.cos(np.radians(config.max_tilt_deg))

    idx = rng.integers(0, len(points), size=(config.iterations, 3))
    p0, p1, p2 = points[idx[:, 0]], points[idx[:, 1]], points[idx[:, 2]]
    normals = np.cross(p1 - p0, p2 - p0)
    norms = np.linalg.norm(normals, axis=1)
    ok = norms > 1e-12
    normals = normals[ok] / norms[ok, None]
    p0 = p0[ok]
    normals *= np.where(normals @ up < 0, -1.0, 1.0)[:, None]  # point to the cameras' side
    upright = normals @ up >= cos_tilt
    normals, p0 = normals[upright], p0[upright]
    offsets = -(normals * p0).sum(1)
    # The floor is under the cameras: the cameras' centroid c is on the normal's side of the plane.
    keep = normals @ cam_centers.mean(0) + offsets > 0
    normals, offsets = normals[keep], offsets[keep]
    if len(normals) == 0:
        raise ValueError(
            "no level plane below the cameras found among the stage points; "
            "the stage may have no visible floor — set the floor by hand (level_transform)"
        )
    # Count inliers in chunks to bound memory: [chunk, N].
    counts = np.concatenate([
        (np.abs(points @ normals[s:s + 256].T + offsets[s:s + 256]) < thresh).sum(0)
        for s in range(0, len(normals), 256)
    ])
    # The best-supported level plane, refined; then, in case that was a large table top or couch seat,
    # a parallel plane below it with comparable support is the floor.
    best = int(np.argmax(counts))
    normal, offset = _refine_plane(points, normals[best], offsets[best], thresh)
    heights = points @ normal + offset
    support = int((np.abs(heights) < thresh).sum())
    lower = np.sort(heights[heights < -3 * thresh])
    if len(lower):
        # Support of a plane at each candidate height: points within +-thresh of it.
        cands = np.arange(lower[0], -3 * thresh, 0.5 * thresh)
        n_near = np.searchsorted(lower, cands + thresh) - np.searchsorted(lower, cands - thresh)
        peak = int(np.argmax(n_near)) if len(cands) else 0
        if len(cands) and n_near[peak] >= config.min_inlier_ratio * support:
            offset -= cands[peak]
            normal, offset = _refine_plane(points, normal, offset, thresh)
    T = np.eye(4)
    R = rotation_between(normal, np.array([0.0, 0.0, 1.0]))
    T[:3, :3] = R
    T[2, 3] = offset  # n.x + d = 0  ->  z' = n.x + d
    n_inliers = int((np.abs(points @ normal + offset) < thresh).sum())
    return FloorPlane(normal, float(offset), n_inliers, T)


def _refine_plane(points, normal, offset, thresh, rounds: int = 3):
    """Least-squares refit of a plane to its inliers (a few rounds); keeps the normal's orientation."""
    for _ in range(rounds):
        inl = points[np.abs(points @ normal + offset) < thresh]
        if len(inl) < 3:
            break
        c = inl.mean(0)
        _, _, vt = np.linalg.svd(inl - c, full_matrices=False)
        n = vt[-1] * np.sign(vt[-1] @ normal)
        normal, offset = n, float(-n @ c)
    return normal, offset


def apply_level(T_level: np.ndarray, points: np.ndarray | None = None, viewmats: np.ndarray | None = None):
    """Move ``points`` [N, 3] and ``viewmats`` [C, 4, 4] into the levelled frame. Returns (points', viewmats')."""
    out_pts = None if points is None else points @ T_level[:3, :3].T + T_level[:3, 3]
    out_vm = None if viewmats is None else viewmats @ np.linalg.inv(T_level)
    return out_pts, out_vm
