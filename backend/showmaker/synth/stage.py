"""The room of a synthetic clip as plain numpy geometry (no Blender): walls, floor, furniture, decoration.

Every piece is a :class:`StagePart` in the world frame (metres, Z up, floor z = 0). The same parts are drawn
by Blender (``blender_scene``) and written as the ground-truth stage mesh, so the two cannot disagree.
Layout: the back wall is at y = +depth/2, side walls at x = +-width/2, the -y side is open (cameras stand
there) and the floor runs on past it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .spec import StageSpec

__all__ = ["StagePart", "build_stage", "stage_mesh", "CAMERA_APRON"]

#: How far (metres) the floor runs on past the room's open side, under the cameras.
CAMERA_APRON = 3.0


@dataclass
class StagePart:
    """One piece of the set.

    vertices: [N, 3] world metres. faces: polygons (tuples of >= 3 vertex indices), counter-clockwise seen
    from outside.
    uv: [N, 2] texture coordinates (metres along the face for tiled materials, [0, 1] for ``image`` parts).
    material: a material name of ``blender_scene.MATERIALS``; color: sRGB (3,) in [0, 1], the base tint.
    image: for material ``image``, the name of a generated picture (``textures.PICTURES``) and its seed.
    """

    name: str
    vertices: np.ndarray
    faces: list[tuple[int, ...]]
    uv: np.ndarray
    material: str
    color: tuple[float, float, float]
    image: tuple[str, int] | None = None


def _rot_z(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def box(name: str, center, size, material: str, color, yaw_deg: float = 0.0) -> StagePart:
    """An axis-aligned box (then turned by ``yaw_deg`` about its centre's vertical): ``center`` (3,) is the
    middle of its bottom face, ``size`` (3,) its extent along its own x, y, z. 24 vertices, 6 quads, UVs in
    metres along each face."""
    sx, sy, sz = size
    # (normal axis, sign) -> the face's 4 corners in unit-cube coordinates, counter-clockwise from outside.
    faces = [
        [(0, 0, 0), (0, 1, 0), (1, 1, 0), (1, 0, 0)],  # bottom (-z)
        [(0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1)],  # top (+z)
        [(0, 0, 0), (1, 0, 0), (1, 0, 1), (0, 0, 1)],  # front (-y)
        [(1, 1, 0), (0, 1, 0), (0, 1, 1), (1, 1, 1)],  # back (+y)
        [(0, 1, 0), (0, 0, 0), (0, 0, 1), (0, 1, 1)],  # left (-x)
        [(1, 0, 0), (1, 1, 0), (1, 1, 1), (1, 0, 1)],  # right (+x)
    ]
    unit = np.array(faces, dtype=np.float64).reshape(-1, 3)
    local = (unit - [0.5, 0.5, 0.0]) * [sx, sy, sz]
    verts = local @ _rot_z(yaw_deg).T + np.asarray(center, dtype=np.float64)
    uv = np.empty((24, 2))
    for f in range(6):
        c = local[4 * f: 4 * f + 4]
        e1, e2 = c[1] - c[0], c[3] - c[0]
        n1, n2 = np.linalg.norm(e1), np.linalg.norm(e2)
        uv[4 * f: 4 * f + 4] = np.array([[0, 0], [n1, 0], [n1, n2], [0, n2]])
    faces = [tuple(range(4 * f, 4 * f + 4)) for f in range(6)]
    return StagePart(name, verts, faces, uv, material, tuple(color))


def panel(name: str, center, size, normal_deg: float, material: str, color, image=None) -> StagePart:
    """A vertical rectangle (picture, poster) of ``size`` (width, height) whose bottom-middle is ``center``
    (3,), facing the horizontal direction ``normal_deg``; UVs span [0, 1]."""
    w, h = size
    n = math.radians(normal_deg)
    right = np.array([-math.sin(n), math.cos(n), 0.0])  # to the right, as seen from the front
    c = np.asarray(center, dtype=np.float64)
    verts = np.stack([c - right * w / 2, c + right * w / 2, c + right * w / 2 + [0, 0, h], c - right * w / 2 + [0, 0, h]])
    uv = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    return StagePart(name, verts, [(0, 1, 2, 3)], uv, material, tuple(color), image)


def cylinder(name: str, center, radius: float, height: float, material: str, color, segments: int = 16,
             top_radius: float | None = None) -> StagePart:
    """A capped (truncated) cone standing on ``center`` (3,) with ``segments`` sides; UVs in metres."""
    top_radius = radius if top_radius is None else top_radius
    a = np.linspace(0.0, 2 * math.pi, segments, endpoint=False)
    ring = np.stack([np.cos(a), np.sin(a), np.zeros_like(a)], -1)
    c = np.asarray(center, dtype=np.float64)
    verts = np.concatenate([c + ring * radius, c + ring * top_radius + [0, 0, height]])
    n = segments
    faces = [(i, (i + 1) % n, n + (i + 1) % n, n + i) for i in range(n)]
    faces += [tuple(range(n - 1, -1, -1)), tuple(range(n, 2 * n))]
    s = a * radius
    uv = np.concatenate([np.stack([s, np.zeros_like(s)], -1), np.stack([s, np.full_like(s, height)], -1)])
    return StagePart(name, verts, faces, uv, material, tuple(color))


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    i, f = int(h * 6) % 6, h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def _local(origin, yaw_deg: float, x: float, y: float, z: float = 0.0) -> list[float]:
    """A point given in the frame of a piece of furniture (origin (2,), turned by yaw_deg) -> world (3,)."""
    p = _rot_z(yaw_deg) @ np.array([x, y, z])
    return [origin[0] + p[0], origin[1] + p[1], p[2]]


def _couch(stage: StageSpec, rng: np.random.Generator) -> list[StagePart]:
    c = stage.couch
    # Local frame: +y is the couch's front (heading_deg); the box helper's local +y must map there.
    yaw = c.heading_deg - 90.0
    W, D, seat = c.width, c.depth, c.seat_height
    fabric = _hsv(rng.uniform(0.07, 0.12), 0.55, 0.45)
    cushion = _hsv(rng.uniform(0.0, 0.12), 0.55, 0.6)
    base_h, arm_w, back_d = seat - 0.14, 0.18, D - c.seat_depth
    parts = [
        box("couch_base", _local(c.center, yaw, 0, 0), (W, D, base_h), "fabric", fabric, yaw),
        box("couch_back", _local(c.center, yaw, 0, -D / 2 + back_d / 2, base_h), (W, back_d, 0.85 - base_h + 0.1),
            "fabric", fabric, yaw),
    ]
    for side in (-1, 1):
        parts.append(box(f"couch_arm_{side:+d}", _local(c.center, yaw, side * (W / 2 - arm_w / 2), back_d / 2, base_h),
                         (arm_w, c.seat_depth, 0.62 - base_h), "fabric", fabric, yaw))
    inner = W - 2 * arm_w
    for k in range(2):
        x = -inner / 2 + inner * (k + 0.5) / 2
        parts.append(box(f"couch_cushion_{k}", _local(c.center, yaw, x, back_d / 2, base_h),
                         (inner / 2 - 0.02, c.seat_depth - 0.02, 0.14), "fabric", fabric, yaw))
        parts.append(box(f"couch_pillow_{k}", _local(c.center, yaw, x * 1.3, -D / 2 + back_d + 0.1, seat),
                         (0.42, 0.14, 0.4), "pattern", cushion, yaw + rng.uniform(-12, 12)))
    return parts


def _table(stage: StageSpec, rng: np.random.Generator) -> list[StagePart]:
    t = stage.table
    (w, d), h, yaw = t.size, t.height, t.heading_deg
    top = 0.04
    parts = [box("table_top", _local(t.center, yaw, 0, 0, h - top), (w, d, top), "wood", (0.45, 0.28, 0.15), yaw)]
    for i, (sx, sy) in enumerate(((-1, -1), (-1, 1), (1, -1), (1, 1))):
        parts.append(box(f"table_leg_{i}", _local(t.center, yaw, sx * (w / 2 - 0.06), sy * (d / 2 - 0.06)),
                         (0.05, 0.05, h - top), "wood", (0.3, 0.18, 0.1), yaw))
    # Things on the table: a stack of books and a mug.
    z = h
    for i in range(3):
        bh = rng.uniform(0.03, 0.05)
        parts.append(box(f"table_book_{i}", _local(t.center, yaw, -w * 0.25, 0.0, z), (0.26, 0.19, bh), "painted",
                         _hsv(rng.uniform(), 0.7, 0.7), yaw + rng.uniform(-15, 15)))
        z += bh
    parts.append(cylinder("table_mug", _local(t.center, yaw, w * 0.22, d * 0.1, h), 0.045, 0.1, "painted",
                          _hsv(rng.uniform(), 0.8, 0.85)))
    rug_w, rug_d = w + 1.2, d + 1.0
    parts.append(box("rug", _local(t.center, yaw, 0, 0), (rug_w, rug_d, 0.012), "rug", _hsv(rng.uniform(), 0.6, 0.5),
                     yaw))
    return parts


def _bookshelf(origin, heading_deg: float, rng: np.random.Generator) -> list[StagePart]:
    """A bookshelf full of books; ``origin`` (2,) is its footprint centre, its open front faces ``heading_deg``."""
    yaw = heading_deg - 90.0
    W, D, H, shelves = 0.9, 0.32, 1.9, 5
    wood = (0.35, 0.22, 0.12)
    parts = [box("shelf_back", _local(origin, yaw, 0, -D / 2 + 0.01), (W, 0.02, H), "wood", wood, yaw)]
    for side in (-1, 1):
        parts.append(box(f"shelf_side_{side:+d}", _local(origin, yaw, side * (W / 2 - 0.01), 0), (0.02, D, H), "wood",
                         wood, yaw))
    for k in range(shelves + 1):
        z = k * (H - 0.02) / shelves
        parts.append(box(f"shelf_board_{k}", _local(origin, yaw, 0, 0, z), (W - 0.04, D, 0.02), "wood", wood, yaw))
        if k == shelves:
            break
        x = -W / 2 + 0.03
        n = 0
        while True:
            bw = rng.uniform(0.025, 0.06)
            if x + bw > W / 2 - 0.03:
                break
            if rng.uniform() < 0.12:  # a gap
                x += bw
                continue
            bh = rng.uniform(0.2, 0.32)
            parts.append(box(f"shelf_book_{k}_{n}", _local(origin, yaw, x + bw / 2, 0.02, z + 0.02),
                             (bw - 0.003, D - 0.08, bh), "painted", _hsv(rng.uniform(), rng.uniform(0.4, 0.9),
                                                                          rng.uniform(0.3, 0.9)), yaw))
            x += bw
            n += 1
    return parts


def build_stage(stage: StageSpec, seed: int) -> list[StagePart]:
    """All parts of the set described by ``stage``; decoration placement and colours follow ``seed``."""
    rng = np.random.default_rng([seed, 7])
    hw, hd, H = stage.width / 2, stage.depth / 2, stage.height
    t = 0.1  # wall thickness
    wall_color = _hsv(rng.uniform(0.5, 0.62), 0.25, 0.75)  # cool, so that skin stands out against it
    parts = [  # the floor spans y in [-hd - CAMERA_APRON, hd]
        box("floor", (0.0, -CAMERA_APRON / 2, -0.02), (2 * hw, 2 * hd + CAMERA_APRON, 0.02), "wood_floor",
            (0.55, 0.36, 0.2)),
        box("wall_back", (0.0, hd + t / 2, 0.0), (2 * hw + 2 * t, t, H), "wallpaper", wall_color),
        box("wall_left", (-hw - t / 2, 0.0, 0.0), (t, 2 * hd, H), "wallpaper", wall_color),
        box("wall_right", (hw + t / 2, 0.0, 0.0), (t, 2 * hd, H), "wallpaper", wall_color),
    ]
    trim = (0.92, 0.9, 0.85)
    parts += [
        box("baseboard_back", (0.0, hd - 0.01, 0.0), (2 * hw, 0.02, 0.1), "painted", trim),
        box("baseboard_left", (-hw + 0.01, 0.0, 0.0), (0.02, 2 * hd, 0.1), "painted", trim),
        box("baseboard_right", (hw - 0.01, 0.0, 0.0), (0.02, 2 * hd, 0.1), "painted", trim),
        box("door_frame", (hw - 0.03, -hd * 0.35, 0.0), (0.06, 1.0, 2.1), "painted", trim),
        box("door", (hw - 0.04, -hd * 0.35, 0.0), (0.06, 0.86, 2.02), "wood", (0.4, 0.25, 0.14)),
        box("door_knob", (hw - 0.09, -hd * 0.35 + 0.33, 1.0), (0.06, 0.06, 0.06), "painted", (0.8, 0.7, 0.3)),
    ]
    parts += _couch(stage, rng) + _table(stage, rng)
    parts += _bookshelf((hw - 0.75, hd - 0.17), -90.0, rng)
    # Floor lamp beside the couch.
    c = stage.couch
    lamp = _local(c.center, c.heading_deg - 90.0, -(c.width / 2 + 0.35), -0.15)
    parts += [cylinder("lamp_pole", lamp, 0.02, 1.5, "painted", (0.15, 0.15, 0.15)),
              cylinder("lamp_base", lamp, 0.16, 0.03, "painted", (0.15, 0.15, 0.15)),
              cylinder("lamp_shade", [lamp[0], lamp[1], 1.4], 0.25, 0.28, "painted", (0.95, 0.9, 0.75), top_radius=0.15)]
    # Pictures on the walls: posters (paper) and framed paintings.
    eps = 0.005
    hangs = [  # (kind, center on the wall face, size, facing)
        ("poster", (-hw * 0.55, hd - eps, 1.25), (0.6, 0.85), -90.0),
        ("painting", (hw * 0.05, hd - eps, 1.35), (0.9, 0.6), -90.0),
        ("poster", (-hw + eps, hd * 0.1, 1.2), (0.55, 0.8), 0.0),
        ("painting", (-hw + eps, -hd * 0.55, 1.3), (0.7, 0.5), 0.0),
        ("poster", (hw - eps, hd * 0.35, 1.25), (0.5, 0.7), 180.0),
    ]
    for k, (kind, (x, y, zc), (w, h), facing) in enumerate(hangs):
        n = math.radians(facing)
        out = np.array([math.cos(n), math.sin(n), 0.0])
        base = np.array([x, y, zc - h / 2])
        if kind == "painting":
            fw = 0.06
            parts.append(box(f"frame_{k}", base + out * 0.015 - [0, 0, fw], (w + 2 * fw, 0.03, h + 2 * fw), "wood",
                             (0.25, 0.15, 0.08), yaw_deg=facing - 90.0))
            base = base + out * 0.031
        parts.append(panel(f"{kind}_{k}", base + out * eps, (w, h), facing, "image", (1.0, 1.0, 1.0),
                           image=(kind, int(rng.integers(1 << 30)))))
    return parts


def stage_mesh(parts: list[StagePart]):
    """All parts as one world-frame ``trimesh.Trimesh`` (metres, fan-triangulated faces, vertex colours =
    part tints in sRGB)."""
    import trimesh

    verts, tris, colors, offset = [], [], [], 0
    for p in parts:
        for f in p.faces:
            tris += [(offset + f[0], offset + f[k], offset + f[k + 1]) for k in range(1, len(f) - 1)]
        verts.append(p.vertices)
        colors.append(np.tile(np.round(np.asarray(p.color) * 255).astype(np.uint8), (len(p.vertices), 1)))
        offset += len(p.vertices)
    return trimesh.Trimesh(np.concatenate(verts), np.asarray(tris, dtype=np.int64),
                           vertex_colors=np.concatenate(colors), process=False)
