"""Per-frame affine alignment of monocular depth to the sparse stage points (METHOD.md eq. 2-3).

For frame i with visible stage points P_i (camera depths z_p, pixels p) and a monocular depth map D_i,

    (a_i, b_i) = argmin_{a, b} sum_p Huber_delta(a * D_i(p) + b - z_p),   delta = huber_c * scene_radius,

solved for every frame at once by iteratively reweighted least squares (a Huber fit is a weighted least
squares whose weights are min(1, delta / |r|)). Only background pixels take part: points that project into
an actor mask are dropped. The aligned depth D^_i = a_i D_i + b_i is applied to the whole map, actor
pixels included, so actors get stage-consistent depth.

Frames with too few points, a non-positive scale or a poor fit are *rejected* and reported, never used
silently.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..geometry import project_points


@dataclass
class DepthAlignConfig:
    """Settings of the depth alignment.

    huber_c: Huber delta as a fraction of the scene radius (lost from the paper's text; ours 0.01).
    min_points: frames with fewer visible background points are rejected.
    irls_iters: iterations of the reweighted least-squares solve.
    max_inlier_rmse: reject a frame whose inlier residual RMS exceeds this many deltas (a fit that did not
        converge to a consistent affine, e.g. a depth model that failed on the frame).
    """

    huber_c: float = 0.01
    min_points: int = 20
    irls_iters: int = 30
    max_inlier_rmse: float = 50.0


@dataclass
class DepthAlignment:
    """Result for F frames: ``scale`` [F], ``shift`` [F] (NaN where rejected), ``valid`` [F] bool,
    ``n_points`` [F] int, ``rmse`` [F] (Huber-inlier residual RMS, stage units) and a reason per rejected
    frame."""

    scale: np.ndarray
    shift: np.ndarray
    valid: np.ndarray
    n_points: np.ndarray
    rmse: np.ndarray
    rejected: dict[int, str] = field(default_factory=dict)

    def apply(self, depth: np.ndarray, frame: int) -> np.ndarray:
        """Aligned depth D^ = a D + b [H, W] for one frame; raises for a rejected frame."""
        if not self.valid[frame]:
            raise ValueError(f"frame {frame} has no depth alignment: {self.rejected.get(frame, 'rejected')}")
        return self.scale[frame] * depth + self.shift[frame]

    def metres_per_unit(self) -> float:
        """Metres per stage unit when the depth model is metric: the median of 1 / a_i over valid frames."""
        if not self.valid.any():
            raise ValueError("no frame could be aligned, so the metric scale is unknown")
        return float(np.median(1.0 / self.scale[self.valid]))


def huber_affine_fit(
    d: torch.Tensor, z: torch.Tensor, frame: torch.Tensor, n_frames: int, delta: float, iters: int = 30
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batched Huber regression z ~ a d + b, one (a, b) per frame, by IRLS.

    Args:
        d: [P] monocular depth samples; z: [P] target camera depths; frame: [P] long frame index of each sample.
        n_frames: F. delta: Huber threshold (stage units).
    Returns:
        (a [F], b [F], inlier_rmse [F]); frames without samples get NaN.
    """
    d, z = d.double(), z.double()
    w = torch.ones_like(d)
    a = torch.full((n_frames,), float("nan"), dtype=torch.float64)
    b = a.clone()

    def sums(x):
        return torch.zeros(n_frames, dtype=torch.float64).index_add_(0, frame, x)

    for _ in range(iters):
        sw, swd, swz = sums(w), sums(w * d), sums(w * z)
        swdd, swdz = sums(w * d * d), sums(w * d * z)
        det = sw * swdd - swd * swd
        ok = det.abs() > 1e-12 * (sw * swdd).abs().clamp_min(1e-300)
        a = torch.where(ok, (sw * swdz - swd * swz) / torch.where(ok, det, 1.0), torch.nan)
        b = torch.where(ok, (swz - a * swd) / sw.clamp_min(1e-300), torch.nan)
        r = (a[frame] * d + b[frame] - z).abs()
        w = torch.where(r <= delta, 1.0, delta / r.clamp_min(1e-300))
    r = a[frame] * d + b[frame] - z
    inl = (r.abs() <= delta).double()
    rmse = torch.sqrt(sums(inl * r * r) / sums(inl).clamp_min(1.0))
    return a, b, rmse


def sample_bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Sample ``image`` [H, W] at pixel coordinates ``uv`` [P, 2] (centres at +0.5), bilinear, edge-clamped."""
    H, W = image.shape
    x = np.clip(uv[:, 0] - 0.5, 0, W - 1)
    y = np.clip(uv[:, 1] - 0.5, 0, H - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, W - 1), np.minimum(y0 + 1, H - 1)
    fx, fy = x - x0, y - y0
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bot = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return top * (1 - fy) + bot * fy


def visible_points(points, viewmat, K, width, height, actor_mask=None, point_ids=None):
    """Camera depth and pixels of the stage points seen in one frame, actor pixels excluded.

    Args:
        points: [N, 3] world stage points. viewmat [4, 4], K [3, 3].
        actor_mask: optional [H, W] bool, True on actor pixels.
        point_ids: optional indices of the points that SfM observed in this frame (its track list);
            without it every point in front of the camera and inside the image counts.
    Returns:
        (uv [P, 2], z [P]) for the kept points.
    """
    pts = points if point_ids is None else points[point_ids]
    uv, z = project_points(pts, viewmat, K)
    keep = (z > 1e-6) & (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
    uv, z = uv[keep], z[keep]
    if actor_mask is not None and len(uv):
        on_actor = actor_mask[uv[:, 1].astype(int), uv[:, 0].astype(int)]
        uv, z = uv[~on_actor], z[~on_actor]
    return uv, z


def align_depths(
    mono_depths, observations, scene_radius: float, config: DepthAlignConfig = DepthAlignConfig()
) -> DepthAlignment:
    """Fit (a_i, b_i) for every frame.

    Args:
        mono_depths: sequence of F monocular depth maps [H, W] (any affine-ambiguous depth; must be
            positively related to distance, i.e. depth not disparity).
        observations: sequence of F pairs (uv [P_i, 2], z [P_i]) from :func:`visible_points`.
        scene_radius: scene size in stage units (``geometry.scene_radius``).
    """
    F = len(mono_depths)
    if len(observations) != F:
        raise ValueError(f"{F} depth maps but {len(observations)} observation sets")
    delta = config.huber_c * scene_radius
    ds, zs, fs = [], [], []
    n_points = np.zeros(F, dtype=np.int64)
    for i, (depth, (uv, z)) in enumerate(zip(mono_depths, observations)):
        d = sample_bilinear(np.asarray(depth, dtype=np.float64), np.asarray(uv, dtype=np.float64)) if len(uv) else np.zeros(0)
        finite = np.isfinite(d) & np.isfinite(z)
        n_points[i] = int(finite.sum())
        if n_points[i] < config.min_points:
            continue
        ds.append(d[finite])
        zs.append(np.asarray(z, dtype=np.float64)[finite])
        fs.append(np.full(n_points[i], i))
    a = np.full(F, np.nan)
    b = np.full(F, np.nan)
    rmse = np.full(F, np.nan)
    if ds:
        ta, tb, tr = huber_affine_fit(
            torch.from_numpy(np.concatenate(ds)), torch.from_numpy(np.concatenate(zs)),
            torch.from_numpy(np.concatenate(fs)), F, delta, config.irls_iters,
        )
        a, b, rmse = ta.numpy(), tb.numpy(), tr.numpy()
    rejected: dict[int, str] = {}
    for i in range(F):
        if n_points[i] < config.min_points:
            rejected[i] = f"only {n_points[i]} visible stage points (need {config.min_points})"
        elif not np.isfinite(a[i]):
            rejected[i] = "degenerate fit (all points at one depth)"
        elif a[i] <= 0:
            rejected[i] = f"negative scale a={a[i]:.3g}: the depth map is inverted or is disparity"
        elif rmse[i] > config.max_inlier_rmse * delta:
            rejected[i] = f"poor fit: inlier RMS {rmse[i]:.3g} > {config.max_inlier_rmse} x delta"
    valid = np.array([i not in rejected for i in range(F)])
    a = np.where(valid, a, np.nan)
    b = np.where(valid, b, np.nan)
    return DepthAlignment(a, b, valid, n_points, rmse, rejected)
