"""Drawing helpers of the QC contact sheets (``showmaker.qc``): palettes, fonts, text, mask tints, skeletons.

Pure PIL + numpy. Coordinates handed to the skeleton helpers are continuous image coordinates in the project
convention (pixel ``(i, j)`` covers ``[i, i + 1) x [j, j + 1)``, so its centre is ``(i + 0.5, j + 0.5)``);
:func:`to_draw_xy` turns them into PIL's coordinates (integer = pixel centre) of a tile scaled by ``scale``.
"""
from __future__ import annotations

import io
import json
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

__all__ = [
    "BACKGROUND", "CUT_COLOR", "GT_COLOR", "GT_CUT_COLOR", "INSTANCE_COLORS", "MP_POSE_EDGES", "SHOT_COLORS",
    "TEXT", "TEXT_DIM", "WARN", "draw_keypoints", "draw_skeleton", "font", "instance_color", "line_height",
    "png_bytes", "shot_color", "text_width", "tint_instances", "to_draw_xy", "wrap",
]

#: Sheet background, caption text colours and a warning colour.
BACKGROUND = (24, 24, 28)
TEXT = (235, 235, 235)
TEXT_DIM = (160, 160, 170)
WARN = (255, 110, 90)
#: Border of a tile on an estimated cut (first frame of a shot / last frame of the previous shot).
CUT_COLOR = (255, 205, 0)
#: Border and badge of a ground-truth tile on a ground-truth cut.
GT_CUT_COLOR = (255, 70, 200)
#: Ground-truth camera centres in the top view.
GT_COLOR = (255, 70, 200)

#: Colour of instance id k (1-based; id 0 is the background and never tinted) is INSTANCE_COLORS[(k - 1) % n].
INSTANCE_COLORS = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
    (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40),
)
#: Colour of shot s in the top view (tab10).
SHOT_COLORS = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)

#: mediapipe BlazePose's 33-landmark skeleton (``mp.solutions.pose.POSE_CONNECTIONS``).
MP_POSE_EDGES = (
    (0, 1), (1, 2), (2, 3), (3, 7), (0, 4), (4, 5), (5, 6), (6, 8), (9, 10), (11, 12), (11, 13), (13, 15),
    (15, 17), (15, 19), (15, 21), (17, 19), (12, 14), (14, 16), (16, 18), (16, 20), (16, 22), (18, 20),
    (11, 23), (12, 24), (23, 24), (23, 25), (24, 26), (25, 27), (26, 28), (27, 29), (28, 30), (29, 31),
    (30, 32), (27, 31), (28, 32),
)


def instance_color(k: int) -> tuple[int, int, int]:
    """Tint of instance id ``k`` (>= 1): mask id k, people track k - 1, ground-truth actor k - 1."""
    return INSTANCE_COLORS[(int(k) - 1) % len(INSTANCE_COLORS)]


def shot_color(s: int) -> tuple[int, int, int]:
    return SHOT_COLORS[int(s) % len(SHOT_COLORS)]


def lighten(c, amount: float = 0.5) -> tuple[int, int, int]:
    return tuple(int(round(v + (255 - v) * amount)) for v in c)


@lru_cache(maxsize=None)
def font(size: int = 13):
    """PIL's default font at ``size`` pixels (a scalable font in Pillow >= 10.1, else the bitmap font)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # old Pillow or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def line_height(f) -> int:
    box = f.getbbox("Ag|")
    return int(box[3] - min(box[1], 0)) + 4


def text_width(f, text: str) -> float:
    return float(f.getlength(text))


def wrap(f, text: str, width: float) -> list[str]:
    """``text`` split into lines no wider than ``width`` pixels (words longer than a line stay whole)."""
    lines = []
    for para in text.split("\n"):
        cur = ""
        for word in para.split(" "):
            trial = word if not cur else cur + " " + word
            if cur and text_width(f, trial) > width:
                lines.append(cur)
                cur = word
            else:
                cur = trial
        lines.append(cur)
    return lines


def tint_instances(img: np.ndarray, ids: np.ndarray, alpha: float = 0.45, outline: bool = True) -> np.ndarray:
    """``img`` [h, w, 3] uint8 with every instance id > 0 of ``ids`` [h, w] blended with its colour.

    ``alpha`` of the instance colour is mixed in; with ``outline`` the instance's border pixels (those with a
    4-neighbour of another id) take the full colour, so adjacent people stay distinguishable.
    """
    out = img.astype(np.float32)
    ids = np.asarray(ids)
    present = [int(k) for k in np.unique(ids) if k > 0]
    if not present:
        return img.copy()
    edge = np.zeros(ids.shape, bool)
    if outline:
        edge[:-1] |= ids[:-1] != ids[1:]
        edge[1:] |= ids[1:] != ids[:-1]
        edge[:, :-1] |= ids[:, :-1] != ids[:, 1:]
        edge[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    for k in present:
        sel = ids == k
        col = np.asarray(instance_color(k), np.float32)
        out[sel] = out[sel] * (1.0 - alpha) + col * alpha
        out[sel & edge] = col
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def to_draw_xy(xy: np.ndarray, scale: float, offset=(0, 0)) -> np.ndarray:
    """Continuous image coordinates [..., 2] (pixel centres at +0.5) -> PIL coordinates in a tile scaled by
    ``scale`` whose top-left corner is at ``offset`` on the sheet."""
    return np.asarray(xy, np.float64) * scale - 0.5 + np.asarray(offset, np.float64)


def _dot(draw: ImageDraw.ImageDraw, x, y, r, fill, outline=(0, 0, 0)):
    draw.ellipse([x - r, y - r, x + r, y + r], fill=fill, outline=outline)


def draw_keypoints(draw: ImageDraw.ImageDraw, kp: np.ndarray, edges, color, scale: float, offset=(0, 0),
                   vis_threshold: float = 0.5, width: int = 1, radius: float = 2.0) -> int:
    """2D keypoints [J, 3] (x, y, visibility/confidence; continuous pixels) as thin bones and dots.

    Bones join two keypoints at or above ``vis_threshold``; those are drawn as filled dots, keypoints with a
    lower non-zero visibility as hollow ones. Returns the number of confident keypoints drawn.
    """
    kp = np.asarray(kp, np.float64)
    xy = to_draw_xy(kp[:, :2], scale, offset)
    ok = (kp[:, 2] >= vis_threshold) & np.isfinite(xy).all(1)
    weak = (kp[:, 2] > 0) & ~ok & np.isfinite(xy).all(1)
    for a, b in edges:
        if ok[a] and ok[b]:
            draw.line([tuple(xy[a]), tuple(xy[b])], fill=color, width=width)
    for j in np.flatnonzero(weak):
        draw.ellipse([xy[j, 0] - radius, xy[j, 1] - radius, xy[j, 0] + radius, xy[j, 1] + radius], outline=color)
    for j in np.flatnonzero(ok):
        _dot(draw, xy[j, 0], xy[j, 1], radius, color)
    return int(ok.sum())


def draw_skeleton(draw: ImageDraw.ImageDraw, joints: np.ndarray, parents, color, scale: float, offset=(0, 0),
                  ok: np.ndarray | None = None, hidden: np.ndarray | None = None, width: int = 3,
                  square: float = 2.5) -> int:
    """A kinematic tree [J, 2] (continuous pixels) as thick outlined bones with square joints.

    ``ok`` [J] bool: joints that exist (default: finite ones); bones need both ends. ``hidden`` [J] bool: joints
    drawn hollow (e.g. ground-truth joints in the frame but occluded). Returns the number of joints drawn.
    """
    xy = to_draw_xy(joints, scale, offset)
    ok = np.isfinite(xy).all(1) if ok is None else (np.asarray(ok, bool) & np.isfinite(xy).all(1))
    hidden = np.zeros(len(xy), bool) if hidden is None else np.asarray(hidden, bool)
    light = lighten(color, 0.45)
    bones = [(j, int(p)) for j, p in enumerate(parents) if p >= 0 and ok[j] and ok[p]]
    for j, p in bones:  # a dark casing first, so bright bones read on any background
        draw.line([tuple(xy[j]), tuple(xy[p])], fill=(0, 0, 0), width=width + 2)
    for j, p in bones:
        draw.line([tuple(xy[j]), tuple(xy[p])], fill=light, width=width)
    for j in np.flatnonzero(ok):
        x, y = xy[j]
        box = [x - square, y - square, x + square, y + square]
        if hidden[j]:
            draw.rectangle(box, outline=light)
        else:
            draw.rectangle(box, fill=color, outline=(0, 0, 0))
    return int(ok.sum())


def png_bytes(img: Image.Image, meta: dict | None = None) -> bytes:
    """``img`` encoded as PNG, with ``meta`` (JSON) in a ``showmaker-qc`` text chunk."""
    info = PngInfo()
    if meta is not None:
        info.add_text("showmaker-qc", json.dumps(meta, sort_keys=True))
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=info, optimize=False, compress_level=6)
    return buf.getvalue()
