"""Ground truth derived from the actors' tracks and the rendered depth and masks (numpy only)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import project_points

__all__ = ["ActorVisibility", "actor_visibility", "vertex_normals"]

#: A vertex or joint counts as hidden when something else is this much (metres) nearer along its pixel.
OCCLUSION_MARGIN = 0.05


@dataclass
class ActorVisibility:
    """What one camera sees of one actor in one frame.

    joints2d: [24, 2] projected joints (pixels, centres at +0.5); joint_in_frame: [24] bool, in front of the
    camera and inside the image; joint_visible: [24] bool, in frame and not hidden by the stage or another
    actor (its pixel shows this actor, or whatever it shows lies behind the joint);
    in_frame_fraction: share of the body's vertices inside the image; occluded_fraction: share of its
    in-frame, camera-facing vertices hidden by the stage or another actor.
    """

    joints2d: np.ndarray
    joint_in_frame: np.ndarray
    joint_visible: np.ndarray
    in_frame_fraction: float
    occluded_fraction: float


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals [V, 3] of a triangle mesh (vertices [V, 3], faces [T, 3])."""
    tri = vertices[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)


def _lookup(img: np.ndarray, uv: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Values of ``img`` [H, W] at pixels ``uv`` [N, 2] where ``ok`` (others: first pixel's value)."""
    H, W = img.shape
    col = np.clip(np.floor(uv[:, 0]).astype(np.int64), 0, W - 1)
    row = np.clip(np.floor(uv[:, 1]).astype(np.int64), 0, H - 1)
    return np.where(ok, img[row, col], img[0, 0])


def actor_visibility(actor_id: int, vertices: np.ndarray, faces: np.ndarray, joints: np.ndarray, K: np.ndarray,
                     viewmat: np.ndarray, depth: np.ndarray, mask: np.ndarray) -> ActorVisibility:
    """Visibility of actor ``actor_id`` (its mask value; vertices [V, 3], joints [24, 3] world) in a frame with
    camera K [3, 3], viewmat [4, 4] and the rendered depth [H, W] and mask [H, W]."""
    H, W = depth.shape

    def inside(uv, z):
        return (z > 1e-3) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)

    uv, z = project_points(vertices, viewmat, K)
    vin = inside(uv, z)
    centre = np.linalg.inv(viewmat)[:3, 3]
    facing = np.einsum("vi,vi->v", vertex_normals(vertices, faces), centre - vertices) > 0
    seen = vin & facing
    d, m = _lookup(depth, uv, seen), _lookup(mask, uv, seen)
    hidden = seen & (m != actor_id) & (d < z - OCCLUSION_MARGIN)
    juv, jz = project_points(joints, viewmat, K)
    jin = inside(juv, jz)
    jd, jm = _lookup(depth, juv, jin), _lookup(mask, juv, jin)
    jvis = jin & ((jm == actor_id) | (jd >= jz - OCCLUSION_MARGIN))
    return ActorVisibility(
        joints2d=juv.astype(np.float32),
        joint_in_frame=jin,
        joint_visible=jvis,
        in_frame_fraction=float(vin.mean()),
        occluded_fraction=float(hidden.sum() / max(seen.sum(), 1)),
    )
