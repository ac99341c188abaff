"""Cameras, frames and rotations: the project's conventions in one place.

Conventions (see docs/architecture.md):

* World frame: right-handed, Z up once the stage is levelled (Blender's frame), units are stage units
  (metres when ``metres_per_unit`` is known).
* Cameras are stored in the OpenCV convention: camera x right, y down, z forward. ``viewmat`` is the
  4x4 world-to-camera matrix, ``K`` the 3x3 intrinsics in pixels, pixel centres at +0.5 (pixel (0, 0)
  covers [0, 1) x [0, 1)).
* Blender cameras look down their local -Z with +Y up: ``cam_blender = cam_opencv @ diag(1, -1, -1)``.
* Quaternions are (w, x, y, z).

Functions accept numpy arrays or torch tensors where noted; batch dimensions lead.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

#: Change of basis between the OpenCV camera frame and Blender's camera frame (its own inverse).
OPENCV_TO_BLENDER_CAM = np.diag([1.0, -1.0, -1.0, 1.0])


def viewmat_to_blender_matrix_world(viewmat: np.ndarray) -> np.ndarray:
    """OpenCV world-to-camera ``viewmat`` [..., 4, 4] -> Blender camera ``matrix_world`` [..., 4, 4].

    Blender's matrix_world maps the camera's local frame (-Z forward, +Y up) to the world.
    """
    cam_to_world = np.linalg.inv(viewmat)
    return cam_to_world @ OPENCV_TO_BLENDER_CAM


def blender_matrix_world_to_viewmat(matrix_world: np.ndarray) -> np.ndarray:
    """Blender camera ``matrix_world`` [..., 4, 4] (may carry scale-free rotation only) -> OpenCV viewmat."""
    cam_to_world = np.asarray(matrix_world, dtype=np.float64) @ OPENCV_TO_BLENDER_CAM
    return np.linalg.inv(cam_to_world)


@dataclass(frozen=True)
class BlenderLens:
    """Blender camera intrinsics: the data a ``bpy.types.Camera`` and render settings need.

    ``sensor_fit`` is 'HORIZONTAL' (``sensor_width`` spans the image width) and pixels are square.
    ``shift_x``/``shift_y`` are in units of the image width: with a horizontal sensor fit Blender scales
    the shift by the fitted side (``BKE_camera_params_compute_viewplane``), not by the larger side as
    with 'AUTO' (the two differ for portrait images).
    """

    lens_mm: float
    sensor_width_mm: float
    shift_x: float
    shift_y: float
    width: int
    height: int


def K_to_blender_lens(K: np.ndarray, width: int, height: int, sensor_width_mm: float = 36.0) -> BlenderLens:
    """Pinhole ``K`` [3, 3] (square pixels, no skew) -> Blender lens, sensor and shift."""
    fx, fy, cx, cy = float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])
    if abs(fx - fy) > 1e-6 * max(fx, fy):
        raise ValueError(f"K has non-square pixels (fx={fx}, fy={fy}); Blender cameras need fx == fy")
    if abs(K[0, 1]) > 1e-9:
        raise ValueError("K has skew; Blender cameras cannot represent it")
    lens = fx * sensor_width_mm / width
    # Blender's shift moves the frustum (+x right, +y up) by shift * width pixels, so the optical
    # axis lands left of / below the image centre: cx = W/2 - shift_x * W, cy = H/2 + shift_y * W.
    shift_x = (width / 2.0 - cx) / width
    shift_y = (cy - height / 2.0) / width
    return BlenderLens(lens, sensor_width_mm, shift_x, shift_y, width, height)


def blender_lens_to_K(lens: BlenderLens) -> np.ndarray:
    """Inverse of :func:`K_to_blender_lens`: Blender lens (horizontal sensor fit) -> ``K`` [3, 3]."""
    fx = lens.lens_mm * lens.width / lens.sensor_width_mm
    cx = lens.width / 2.0 - lens.shift_x * lens.width
    cy = lens.height / 2.0 + lens.shift_y * lens.width
    return np.array([[fx, 0.0, cx], [0.0, fx, cy], [0.0, 0.0, 1.0]])


def look_at_viewmat(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """World-to-camera OpenCV viewmat [4, 4] for a camera at ``eye`` looking at ``target`` (Z-up world)."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("look_at: view direction is parallel to 'up'")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)  # camera y points down in the image
    R = np.stack([x, y, z])  # rows: camera axes in world coordinates
    viewmat = np.eye(4)
    viewmat[:3, :3] = R
    viewmat[:3, 3] = -R @ eye
    return viewmat


def fov_to_K(fov_x_deg: float, width: int, height: int) -> np.ndarray:
    """Centred pinhole ``K`` [3, 3] from a horizontal field of view in degrees."""
    fx = 0.5 * width / math.tan(math.radians(fov_x_deg) / 2.0)
    return np.array([[fx, 0.0, width / 2.0], [0.0, fx, height / 2.0], [0.0, 0.0, 1.0]])


def camera_center(viewmat):
    """Camera centre in world coordinates [..., 3] from viewmat [..., 4, 4] (numpy or torch)."""
    R = viewmat[..., :3, :3]
    t = viewmat[..., :3, 3]
    if isinstance(viewmat, torch.Tensor):
        return -(R.transpose(-1, -2) @ t.unsqueeze(-1)).squeeze(-1)
    return -np.einsum("...ji,...j->...i", R, t)


def project_points(points, viewmat, K):
    """Project world points to pixels.

    Args:
        points: [..., P, 3] world coordinates.
        viewmat: [..., 4, 4] world-to-camera (OpenCV).
        K: [..., 3, 3] intrinsics.
    Returns:
        (uv [..., P, 2] pixel coordinates, pixel centres at +0.5; z [..., P] camera depth). Works on numpy
        arrays or torch tensors (differentiable).
    """
    if isinstance(points, torch.Tensor):
        cam = points @ viewmat[..., :3, :3].transpose(-1, -2) + viewmat[..., None, :3, 3]
        z = cam[..., 2]
        uvw = cam @ K.transpose(-1, -2)
        return uvw[..., :2] / z.clamp_min(1e-9).unsqueeze(-1), z
    points = np.asarray(points)
    cam = points @ np.swapaxes(viewmat[..., :3, :3], -1, -2) + viewmat[..., None, :3, 3]
    z = cam[..., 2]
    uvw = cam @ np.swapaxes(K, -1, -2)
    return uvw[..., :2] / np.maximum(z, 1e-9)[..., None], z


def backproject_depth(depth, K, viewmat):
    """Lift a planar depth map to world points.

    Args:
        depth: [H, W] camera z (OpenCV) per pixel (numpy).
        K: [3, 3]; viewmat: [4, 4] world-to-camera.
    Returns:
        [H, W, 3] world points (pixel centres at +0.5).
    """
    H, W = depth.shape
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    cam = rays * depth[..., None]
    c2w = np.linalg.inv(viewmat)
    return cam @ c2w[:3, :3].T + c2w[:3, 3]


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Quaternions (w, x, y, z) [..., 4] (normalised here) -> rotation matrices [..., 3, 3]."""
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        -1,
    ).reshape(q.shape[:-1] + (3, 3))


def matrix_to_quat(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] -> unit quaternions (w, x, y, z) [..., 4] with w >= 0."""
    m = R.reshape(-1, 3, 3)
    m00, m11, m22 = m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]
    # Four candidate solutions; take the numerically best-conditioned per matrix.
    sq = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    # sqrt of the positive part only: its gradient stays finite where a candidate is exactly 0.
    pos = sq > 0
    q_abs = torch.zeros_like(sq).masked_scatter(pos, torch.sqrt(sq[pos]))
    cands = torch.stack(
        [
            torch.stack([q_abs[:, 0] ** 2, m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], -1),
            torch.stack([m[:, 2, 1] - m[:, 1, 2], q_abs[:, 1] ** 2, m[:, 1, 0] + m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0]], -1),
            torch.stack([m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] + m[:, 0, 1], q_abs[:, 2] ** 2, m[:, 2, 1] + m[:, 1, 2]], -1),
            torch.stack([m[:, 1, 0] - m[:, 0, 1], m[:, 2, 0] + m[:, 0, 2], m[:, 2, 1] + m[:, 1, 2], q_abs[:, 3] ** 2], -1),
        ],
        1,
    ) / (2.0 * q_abs.clamp_min(0.1)[..., None])
    best = q_abs.argmax(-1)
    q = cands[torch.arange(m.shape[0]), best]
    q = q * torch.where(q[:, :1] < 0, -1.0, 1.0)
    return (q / q.norm(dim=-1, keepdim=True)).reshape(R.shape[:-2] + (4,))


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a * b of (w, x, y, z) quaternions [..., 4] (rotation b first, then a)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        -1,
    )


def rigid_transform_points(T, points):
    """Apply 4x4 transform(s) T [..., 4, 4] to points [..., P, 3] (numpy or torch)."""
    if isinstance(points, torch.Tensor):
        return points @ T[..., :3, :3].transpose(-1, -2) + T[..., None, :3, 3]
    return points @ np.swapaxes(T[..., :3, :3], -1, -2) + T[..., None, :3, 3]


def scene_radius(cam_centers: np.ndarray, points: np.ndarray | None = None) -> float:
    """A robust size of the scene in stage units, for thresholds that must not depend on SfM scale.

    The radius of the camera rig (1.1 x the largest camera distance from the rig centre, as in 3DGS),
    or, when the cameras barely move (a locked-off TV shot), the median distance of the stage points
    ``points`` [P, 3] from the rig centre. ``cam_centers`` is [C, 3].
    """
    cam_centers = np.asarray(cam_centers, dtype=np.float64).reshape(-1, 3)
    center = cam_centers.mean(0)
    rig = 1.1 * float(np.linalg.norm(cam_centers - center, axis=1).max(initial=0.0))
    if points is not None and len(points):
        pts = np.median(np.linalg.norm(np.asarray(points, dtype=np.float64) - center, axis=1))
        return max(rig, float(pts))
    if rig <= 0:
        raise ValueError("scene_radius: a single camera position and no points: the scene size is unknown")
    return rig
