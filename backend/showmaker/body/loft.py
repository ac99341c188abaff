"""Closed lofted tubes: the building block of the procedural body.

A tube is a smooth centreline carrying a stack of rings (super-elliptic cross-sections, optionally
deeper on one side than the other), closed at both ends by domes that end in a pole vertex. Each tube
is a closed, consistently outward-oriented triangle mesh. All arrays are float64 numpy, in metres.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import PchipInterpolator

__all__ = ["Loft", "Station", "arc_length", "loft", "mirror_x"]


@dataclass(frozen=True)
class Station:
    """A cross-section of a tube: its centre, half-width along the tube's ``u`` axis, and half-depths
    towards the tube's front (+w) and back (-w)."""

    centre: np.ndarray  # [3]
    half_width: float
    front: float
    back: float


@dataclass(frozen=True)
class Loft:
    """A closed tube mesh.

    vertices [M, 3]; faces [K, 3] int64, counter-clockwise seen from outside; ring [M] the ring each
    vertex belongs to (-1 for the two poles); centres [R, 3] and tangents [R, 3] the ring centres and
    unit centreline directions, in order along the tube (ring r holds vertices 1 + r*n ... 1 + r*n + n-1).
    """

    vertices: np.ndarray
    faces: np.ndarray
    ring: np.ndarray
    centres: np.ndarray
    tangents: np.ndarray


def loft(
    stations: list[Station],
    ref_u: tuple[float, float, float],
    ref_front: tuple[float, float, float],
    n_around: int,
    n_rings: int,
    caps: tuple[float, float],
    cap_rings: int = 4,
    exponent: float = 2.0,
    params: np.ndarray | None = None,
) -> Loft:
    """Sweep super-elliptic rings along the smooth curve through ``stations``.

    Ring centres and sizes are monotone cubic (PCHIP) interpolations of the stations over ``params``
    (increasing, one per station; default: the arc length of the polyline through them), sampled at
    ``n_rings`` evenly spaced parameters from the first station to the last. Fixed ``params`` keep
    each ring at the same place between its stations whatever their positions. Each ring's ``u`` axis
    is ``ref_u`` made perpendicular to the centreline; its ``w`` axis
    (the front) is perpendicular to both, on the side of ``ref_front``. ``exponent`` 2 gives
    ellipses, larger values squarer sections. ``caps`` are the heights of the closing domes before
    the first and after the last station, each made of ``cap_rings`` rings and a pole.
    """
    knots = np.array([s.centre for s in stations], dtype=np.float64)
    arc = arc_length(stations) if params is None else np.asarray(params, dtype=np.float64)
    sizes = np.array([[s.half_width, s.front, s.back] for s in stations], dtype=np.float64)
    t = np.linspace(arc[0], arc[-1], n_rings)
    centres = PchipInterpolator(arc, knots)(t)
    size = PchipInterpolator(arc, sizes)(t)
    tangents = np.gradient(centres, t, axis=0)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)

    # Dome rings: offsets along the end tangents and section scales of a quarter ellipse.
    phi = 0.5 * np.pi * np.arange(1, cap_rings + 1) / (cap_rings + 1)
    head = [(centres[0] - tangents[0] * caps[0] * np.sin(p), size[0] * np.cos(p), tangents[0]) for p in phi[::-1]]
    tail = [(centres[-1] + tangents[-1] * caps[1] * np.sin(p), size[-1] * np.cos(p), tangents[-1]) for p in phi]
    body = list(zip(centres, size, tangents))
    rings = head + body + tail
    ring_centres = np.array([r[0] for r in rings])
    ring_sizes = np.array([r[1] for r in rings])
    ring_tangents = np.array([r[2] for r in rings])

    u = np.asarray(ref_u, dtype=np.float64)[None] - (ring_tangents @ np.asarray(ref_u))[:, None] * ring_tangents
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    w = np.cross(ring_tangents, u)
    w *= np.sign(w @ np.asarray(ref_front, dtype=np.float64))[:, None]

    theta = 2.0 * np.pi * np.arange(n_around) / n_around
    c, s = np.cos(theta), np.sin(theta)
    cu = np.sign(c) * np.abs(c) ** (2.0 / exponent)  # [n]
    sw = np.sign(s) * np.abs(s) ** (2.0 / exponent)
    depth = np.where(sw[None] > 0, ring_sizes[:, 1:2], ring_sizes[:, 2:3])  # [R, n]
    ring_pts = (
        ring_centres[:, None]
        + (ring_sizes[:, 0:1] * cu[None])[..., None] * u[:, None]
        + (depth * sw[None])[..., None] * w[:, None]
    )  # [R, n, 3]
    poles = np.stack([centres[0] - tangents[0] * caps[0], centres[-1] + tangents[-1] * caps[1]])
    n_r = len(rings)
    vertices = np.concatenate([poles[:1], ring_pts.reshape(-1, 3), poles[1:]])
    ring = np.concatenate([[-1], np.repeat(np.arange(n_r), n_around), [-1]])

    idx = 1 + np.arange(n_r * n_around).reshape(n_r, n_around)
    nxt = np.roll(idx, -1, axis=1)
    a, b, c_, d = idx[:-1], nxt[:-1], nxt[1:], idx[1:]
    quads = np.concatenate([np.stack([a, b, c_], -1), np.stack([a, c_, d], -1)], axis=1).reshape(-1, 3)
    last = len(vertices) - 1
    fan0 = np.stack([np.zeros(n_around, np.int64), nxt[0], idx[0]], -1)
    fan1 = np.stack([np.full(n_around, last), idx[-1], nxt[-1]], -1)
    faces = np.concatenate([fan0, quads, fan1]).astype(np.int64)
    if _signed_volume(vertices, faces) < 0:
        faces = faces[:, [0, 2, 1]]
    return Loft(vertices, faces, ring, ring_centres, ring_tangents)


def arc_length(stations: list[Station]) -> np.ndarray:
    """Cumulative length [N] of the polyline through the station centres, from 0."""
    knots = np.array([s.centre for s in stations], dtype=np.float64)
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(knots, axis=0), axis=1))])


def mirror_x(part: Loft) -> Loft:
    """The mirror image of ``part`` across the x = 0 plane (left <-> right), still outward-facing."""
    flip = np.array([-1.0, 1.0, 1.0])
    return Loft(part.vertices * flip, part.faces[:, [0, 2, 1]], part.ring, part.centres * flip, part.tangents * flip)


def _signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Volume enclosed by a closed triangle mesh; negative when its faces wind inwards."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)
