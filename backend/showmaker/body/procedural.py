"""The project's own SMPL-format body model: generated from :mod:`.anatomy`, cached as an ``.npz``.

The file holds SMPL's keys, so ``smplx.SMPL`` loads it like the real model:

=================  ==============  ==========================================================
key                shape           content
=================  ==============  ==========================================================
v_template         [V, 3] f64      rest vertices (T-pose, +y up, facing +z, metres)
shapedirs          [V, 3, 10] f64  linear shape directions (see ``anatomy.SHAPE_DIRECTIONS``)
posedirs           [V, 3, 207] f32 zeros: no pose-corrective blend shapes
J_regressor        [24, V] f64     joints = J_regressor @ vertices; rows >= 0, sum to 1
weights            [V, 24] f64     skinning weights; rows >= 0, sum to 1
kintree_table      [2, 24] i64     row 0: parents (-1 for the root), row 1: 0..23
f                  [F, 3] i64      triangles, counter-clockwise seen from outside
part_labels        [V] u8          ``BodyPart`` of each vertex
part_names         [13] str        ``BodyPart`` names by value
extra_joint_names  [21] str        smplx ``vertex_ids`` keys (nose, eyes, ears, toes, heels,
extra_joint_vertices [21] i64      fingertips) and their vertex indices
version            [] i64          ``GENERATOR_VERSION``
=================  ==============  ==========================================================

Generation is deterministic (pure numpy, no randomness). The file name carries ``GENERATOR_VERSION``:
bump it whenever the output changes, and every cache regenerates on first use.
"""
from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import numpy as np

from ..atomic import DiskFullError, atomic_write_bytes
from .anatomy import NUM_BETAS, Part, body_parts, skeleton
from .joints import NUM_JOINTS, SMPL_JOINT_NAMES, SMPL_PARENTS
from .parts import BodyPart

__all__ = ["GENERATOR_VERSION", "cache_dir", "ensure_procedural_model", "generate", "procedural_model_path"]

GENERATOR_VERSION = 2

log = logging.getLogger(__name__)

_NUM_POSE_BASIS = 9 * (NUM_JOINTS - 1)
_WEIGHT_FLOOR = 0.02  # skinning weights below this (before renormalising) drop to exactly zero
_SHAPE_STEP = 1e-3  # central-difference step for the shape directions

# The part whose tube carries each joint (J_regressor averages two of its rings around the joint).
_JOINT_HOST = {
    "pelvis": "torso",
    "spine1": "torso",
    "spine2": "torso",
    "spine3": "torso",
    "neck": "neck",
    "head": "neck",
    **{f"{s}_{j}": f"{s}_arm" for s in ("left", "right") for j in ("collar", "shoulder", "elbow", "wrist")},
    **{f"{s}_hand": f"{s}_hand" for s in ("left", "right")},
    **{f"{s}_{j}": f"{s}_leg" for s in ("left", "right") for j in ("hip", "knee", "ankle")},
    **{f"{s}_foot": f"{s}_foot" for s in ("left", "right")},
}

# Each joint's bone, as segments (start, end) between skeleton points; skinning weights fall off with
# the distance to them.
_BONES = {
    "pelvis": [("pelvis", "spine1"), ("left_hip", "right_hip")],
    "spine1": [("spine1", "spine2")],
    "spine2": [("spine2", "spine3")],
    "spine3": [("spine3", "neck")],
    "neck": [("neck", "head")],
    "head": [("head", "head_top")],
    **{
        f"{s}_{j}": [(f"{s}_{j}", f"{s}_{k}")]
        for s in ("left", "right")
        for j, k in [
            ("hip", "knee"),
            ("knee", "ankle"),
            ("ankle", "foot"),
            ("foot", "toe"),
            ("collar", "shoulder"),
            ("shoulder", "elbow"),
            ("elbow", "wrist"),
            ("wrist", "hand"),
            ("hand", "fingertip"),
        ]
    },
}


def cache_dir() -> Path:
    """``$SHOWMAKER_CACHE/body`` (default ``~/.cache/showmaker/body``)."""
    root = os.environ.get("SHOWMAKER_CACHE") or Path.home() / ".cache" / "showmaker"
    return Path(root) / "body"


def procedural_model_path() -> Path:
    """Where the current generator's model file lives (it may not exist yet)."""
    return cache_dir() / f"showmaker_body_v{GENERATOR_VERSION}.npz"


def ensure_procedural_model() -> Path:
    """Path to the procedural model file, generating it (atomically) if missing or unreadable."""
    path = procedural_model_path()
    if path.exists():
        try:
            with np.load(path) as data:
                if int(data["version"]) == GENERATOR_VERSION:
                    return path
            log.warning("%s: made by another generator version; regenerating", path)
        except Exception as exc:  # truncated or foreign file: rebuild it
            log.warning("%s: unreadable (%s: %s); regenerating", path, type(exc).__name__, exc)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **generate())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buffer.getvalue())
    except DiskFullError:
        raise
    except OSError as exc:
        raise OSError(
            f"cannot write the procedural body model to {path} ({type(exc).__name__}: {exc}); "
            f"point SHOWMAKER_CACHE at a writable directory"
        ) from exc
    log.info("wrote the procedural body model to %s", path)
    return path


def generate() -> dict[str, np.ndarray]:
    """Build the procedural model's arrays (the keys listed in the module docstring)."""
    parts = body_parts(np.zeros(NUM_BETAS))
    offsets = np.cumsum([0] + [len(p.mesh.vertices) for p in parts])
    vertices = np.concatenate([p.mesh.vertices for p in parts])
    faces = np.concatenate([p.mesh.faces + o for p, o in zip(parts, offsets)])
    joints = skeleton(np.zeros(NUM_BETAS))

    shapedirs = np.stack([_shape_direction(k) for k in range(NUM_BETAS)], axis=-1)
    regressor = np.stack(
        [_joint_regressor_row(parts, offsets, _JOINT_HOST[n], joints[n], len(vertices)) for n in SMPL_JOINT_NAMES]
    )
    weights = np.concatenate([_skinning_weights(p, joints) for p in parts])
    landmarks = {k: v + o for p, o in zip(parts, offsets) for k, v in _landmark_vertices(p).items()}
    names = sorted(landmarks)
    return {
        "v_template": vertices,
        "shapedirs": shapedirs,
        "posedirs": np.zeros((len(vertices), 3, _NUM_POSE_BASIS), dtype=np.float32),
        "J_regressor": regressor,
        "weights": weights,
        "kintree_table": np.stack([SMPL_PARENTS, np.arange(NUM_JOINTS)]).astype(np.int64),
        "f": faces.astype(np.int64),
        "part_labels": np.concatenate([p.labels for p in parts]).astype(np.uint8),
        "part_names": np.array([p.name.lower() for p in BodyPart]),
        "extra_joint_names": np.array(names),
        "extra_joint_vertices": np.array([landmarks[k] for k in names], dtype=np.int64),
        "version": np.array(GENERATOR_VERSION, dtype=np.int64),
    }


def _shape_direction(k: int) -> np.ndarray:
    """Vertex displacement [V, 3] per unit of shape coefficient ``k`` (central difference)."""
    step = np.zeros(NUM_BETAS)
    step[k] = _SHAPE_STEP

    def vertices(beta):
        return np.concatenate([p.mesh.vertices for p in body_parts(beta)])

    return (vertices(step) - vertices(-step)) / (2 * _SHAPE_STEP)


def _joint_regressor_row(parts: list[Part], offsets, host: str, joint: np.ndarray, n_vertices: int) -> np.ndarray:
    """A J_regressor row [V]: non-negative weights on the two rings of ``host`` that bracket ``joint``,
    summing to 1, whose weighted vertex average is exactly ``joint``.

    Start from ring averages blended by the joint's position between the rings, then apply the
    smallest correction that makes the average exact (a 4x4 solve), pinning any weight it would make
    negative to zero and solving again.
    """
    index = [p.name for p in parts].index(host)
    mesh, offset = parts[index].mesh, offsets[index]
    along = np.einsum("rk,rk->r", joint - mesh.centres, mesh.tangents)  # joint's offset past each ring
    brackets = np.flatnonzero((along[:-1] >= 0) & (along[1:] < 0))
    k = brackets[np.argmin(np.linalg.norm(mesh.centres[brackets] - joint, axis=1))]
    blend = along[k] / (along[k] - along[k + 1])
    rings = [np.flatnonzero(mesh.ring == r) for r in (k, k + 1)]
    idx = np.concatenate(rings)
    w0 = np.concatenate([np.full(len(r), share / len(r)) for r, share in zip(rings, (1 - blend, blend))])
    a = np.vstack([mesh.vertices[idx].T, np.ones(len(idx))])  # [4, m]
    target = np.append(joint, 1.0)
    free = np.ones(len(idx), dtype=bool)  # vertices whose weight may be non-zero
    while True:
        af = a[:, free]
        w = w0[free] + af.T @ np.linalg.solve(af @ af.T, target - af @ w0[free])
        if w.min() >= 0:
            break
        free[np.flatnonzero(free)[w < 0]] = False  # pin negative weights to zero and solve again
        if free.sum() < 4:
            raise RuntimeError(f"generator bug: joint at {joint} is not inside the rings of {host}")
    row = np.zeros(n_vertices)
    row[offset + idx[free]] = w
    return row


def _segment_distance(points: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Distance [P] from each of ``points`` [P, 3] to the segment start-end."""
    d = end - start
    t = np.clip((points - start) @ d / (d @ d), 0.0, 1.0)
    return np.linalg.norm(points - (start + t[:, None] * d), axis=1)


def _skinning_weights(part: Part, joints: dict[str, np.ndarray]) -> np.ndarray:
    """Skinning weights [M, 24] of a part's vertices over its influences.

    Each influence gets (nearest bone distance / its bone distance) ** power, normalised; weights under
    ``_WEIGHT_FLOOR`` are then shaved to zero and the rest renormalised, which keeps rows smooth where
    they blend (around joints) and exactly zero far from a joint.
    """
    v = part.mesh.vertices
    dist = np.stack(
        [
            np.min([_segment_distance(v, joints[a], joints[b]) for a, b in _BONES[name]], axis=0)
            for name in part.influences
        ],
        axis=1,
    )
    w = (dist.min(axis=1, keepdims=True).clip(1e-9) / dist.clip(1e-9)) ** part.power
    w /= w.sum(axis=1, keepdims=True)
    w = np.maximum(w - _WEIGHT_FLOOR, 0.0)
    w /= w.sum(axis=1, keepdims=True)
    out = np.zeros((len(v), NUM_JOINTS))
    out[:, [SMPL_JOINT_NAMES.index(n) for n in part.influences]] = w
    return out


def _landmark_vertices(part: Part) -> dict[str, int]:
    """Index (within the part) of the vertex at each of the part's landmarks."""
    v = part.mesh.vertices
    return {k: int(np.argmin(np.linalg.norm(v - p, axis=1))) for k, p in part.landmarks.items()}
