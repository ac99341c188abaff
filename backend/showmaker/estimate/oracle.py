"""Oracle estimators: read the synthetic clip's ground truth, then add the noise and the ambiguity a real
estimator has. For tests, ablations and the benchmark tables only; the pipeline refuses them on a clip
without ground truth, and they are always chosen by name (``--estimators oracle``), never by default on
user footage.

What each one hides from the pipeline, as its real counterpart would:
* cameras + sparse points: SfM's unknown similarity (rotation, translation, scale) of the world frame,
  small pose noise, and a sparse, noisy point cloud with per-frame visibility lists (track lists);
* depth: a per-frame unknown affine (scale, shift) of the true depth plus smooth multiplicative noise, as a
  monocular model's affine-ambiguous output;
* masks: the ground-truth instance masks (SAM-quality masks).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from ..geometry import backproject_depth, project_points


@dataclass
class OracleConfig:
    """Noise and ambiguity added by the oracle estimators.

    similarity: hide the world frame behind a random similarity (as SfM does).
    rot_noise_deg / trans_noise: per-frame camera noise (degrees; fraction of the scene size).
    points_per_frame / point_frame_stride: sparse points sampled from every ``stride``-th frame.
    point_noise: point position noise as a fraction of its depth.
    depth_scale_range: range of the hidden per-frame depth scale 1/a (the model's unit error).
    depth_noise: std of the smooth multiplicative depth noise.
    seed: everything is deterministic given the seed.
    """

    similarity: bool = True
    rot_noise_deg: float = 0.05
    trans_noise: float = 0.001
    points_per_frame: int = 1500
    point_frame_stride: int = 4
    point_noise: float = 0.002
    depth_scale_range: tuple[float, float] = (0.6, 1.6)
    depth_noise: float = 0.01
    seed: int = 0


def random_similarity(rng: np.random.Generator) -> np.ndarray:
    """A random 4x4 similarity (uniform rotation, scale in [0.3, 3], translation ~ N(0, 2))."""
    S = np.eye(4)
    S[:3, :3] = Rotation.random(random_state=int(rng.integers(2**31))).as_matrix() * rng.uniform(0.3, 3.0)
    S[:3, 3] = rng.normal(0.0, 2.0, 3)
    return S


def oracle_cameras_and_points(clip, cfg: OracleConfig = OracleConfig()):
    """Cameras and a sparse stage point cloud as an SfM run would give them.

    Returns a dict: ``Ks`` [F, 3, 3], ``viewmats`` [F, 4, 4] (hidden frame), ``points`` [P, 3],
    ``colors`` [P, 3] in [0, 1], ``vis_frame`` / ``vis_point`` (pairs: point p observed in frame f),
    ``gt_from_est`` [4, 4] (the similarity taking estimated-frame coordinates to ground truth, for evaluation
    only).
    """
    rng = np.random.default_rng(cfg.seed)
    F = clip.frame_count
    S = random_similarity(rng) if cfg.similarity else np.eye(4)
    s = np.cbrt(np.linalg.det(S[:3, :3]))
    S_inv = np.linalg.inv(S)
    # x_est = S x_gt: a camera keeps its pose relative to the scene, so its rotation becomes R R_S^T and its
    # centre S C_gt; the viewmat is rebuilt from those (a rigid matrix, as SfM gives).
    viewmats = np.empty((F, 4, 4))
    R_S = S[:3, :3] / s
    for f in range(F):
        V = clip.viewmats[f]
        R = V[:3, :3] @ R_S.T
        C_gt = -V[:3, :3].T @ V[:3, 3]
        C = S[:3, :3] @ C_gt + S[:3, 3]
        dR = Rotation.from_rotvec(np.radians(cfg.rot_noise_deg) * rng.normal(size=3)).as_matrix()
        R = dR @ R
        C = C + cfg.trans_noise * s * rng.normal(size=3)
        viewmats[f] = np.eye(4)
        viewmats[f, :3, :3] = R
        viewmats[f, :3, 3] = -R @ C
    H, W = clip.depth.shape[1:]
    pts, cols = [], []
    for f in range(0, F, cfg.point_frame_stride):
        depth = clip.depth[f]
        bg = (clip.masks[f] == 0) & np.isfinite(depth) & (depth > 0)
        ys, xs = np.nonzero(bg)
        if len(ys) == 0:
            continue
        pick = rng.choice(len(ys), min(cfg.points_per_frame, len(ys)), replace=False)
        ys, xs = ys[pick], xs[pick]
        world = backproject_depth(np.where(bg, depth, 0.0), clip.K[f], clip.viewmats[f])[ys, xs]
        world += rng.normal(size=world.shape) * cfg.point_noise * depth[ys, xs, None]
        pts.append(world)
        cols.append(clip.frames[f][ys, xs].astype(np.float64) / 255.0)
    pts_gt = np.concatenate(pts)
    colors = np.concatenate(cols)
    # Visibility: points in front of the camera, inside the image, not occluded (depth test against GT).
    vis_f, vis_p = [], []
    for f in range(F):
        uv, z = project_points(pts_gt, clip.viewmats[f], clip.K[f])
        inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
        idx = np.flatnonzero(inside)
        d = clip.depth[f][uv[idx, 1].astype(int), uv[idx, 0].astype(int)]
        seen = np.abs(d - z[idx]) < 0.02 * z[idx] + 0.01
        idx = idx[seen & (clip.masks[f][uv[idx, 1].astype(int), uv[idx, 0].astype(int)] == 0)]
        vis_f.append(np.full(len(idx), f))
        vis_p.append(idx)
    points = pts_gt @ S[:3, :3].T + S[:3, 3]
    return {
        "Ks": clip.K.astype(np.float64),
        "viewmats": viewmats,
        "points": points,
        "colors": colors,
        "vis_frame": np.concatenate(vis_f),
        "vis_point": np.concatenate(vis_p),
        "gt_from_est": S_inv,
    }


def oracle_mono_depth(clip, frame: int, cfg: OracleConfig = OracleConfig()) -> np.ndarray:
    """Affine-ambiguous 'monocular depth' [H, W] of one frame: (z_gt - b) / a times smooth noise.

    The hidden a, b differ per frame (deterministic in ``cfg.seed`` and the frame); actor pixels have depth
    too (the real model sees the whole image).
    """
    rng = np.random.default_rng([cfg.seed, frame])
    z = clip.depth[frame].astype(np.float64)
    finite = np.isfinite(z) & (z > 0)
    far = np.max(z[finite]) if finite.any() else 1.0
    z = np.where(finite, z, far)
    inv_a = rng.uniform(*cfg.depth_scale_range)
    b = rng.uniform(-0.05, 0.05) * float(np.median(z))
    H, W = z.shape
    coarse = rng.normal(0.0, cfg.depth_noise, (4, 4))
    yy = np.linspace(0, 3, H)[:, None]
    xx = np.linspace(0, 3, W)[None, :]
    # Bilinear upsampling of a 4x4 noise grid: smooth, low-frequency errors like a real depth network's.
    y0, x0 = np.minimum(yy.astype(int), 2), np.minimum(xx.astype(int), 2)
    fy, fx = yy - y0, xx - x0
    noise = (coarse[y0, x0] * (1 - fy) * (1 - fx) + coarse[y0 + 1, x0] * fy * (1 - fx)
             + coarse[y0, x0 + 1] * (1 - fy) * fx + coarse[y0 + 1, x0 + 1] * fy * fx)
    return ((z - b) * inv_a * (1.0 + noise)).astype(np.float32)
