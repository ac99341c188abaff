"""Procedural pictures for the set's walls, made with numpy from a seed (no files, no Blender).

Each one is unique and full of corners and edges, so that feature matchers find many distinctive
points across shots.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["PICTURES", "make_picture"]


def _noise(rng: np.random.Generator, h: int, w: int, octaves: int = 5) -> np.ndarray:
    """Fractal value noise [h, w] in [0, 1]."""
    out = np.zeros((h, w))
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = 2 ** (o + 2)
        grid = rng.uniform(size=(cells + 1, cells + 1))
        out += amp * ndimage.zoom(grid, (h / (cells + 1), w / (cells + 1)), order=3, mode="nearest")[:h, :w]
        total += amp
        amp *= 0.55
    out /= total
    return (out - out.min()) / max(out.max() - out.min(), 1e-9)


def _palette(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` saturated, well-spread sRGB colours [n, 3]."""
    hues = (rng.uniform() + np.arange(n) / n + rng.uniform(-0.05, 0.05, n)) % 1.0
    s, v = rng.uniform(0.5, 0.95, n), rng.uniform(0.45, 0.95, n)
    k = np.array([5.0, 3.0, 1.0])
    f = (k[None] + hues[:, None] * 6.0) % 6.0
    return v[:, None] - v[:, None] * s[:, None] * np.clip(np.minimum(f, 4.0 - f), 0.0, 1.0)


def poster(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A graphic poster [h, w, 3]: a coloured ground, big shapes, a block of 'title' bars, a border."""
    pal = _palette(rng, 6)
    img = np.ones((h, w, 3)) * pal[0] * (0.8 + 0.2 * _noise(rng, h, w, 3)[..., None])
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    for k in range(rng.integers(5, 9)):
        c = pal[1 + k % 5]
        cy, cx, r = rng.uniform(0.1, 0.8) * h / max(h, w), rng.uniform(0.1, 0.9) * w / max(h, w), rng.uniform(0.05, 0.25)
        kind = rng.integers(3)
        if kind == 0:
            m = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        elif kind == 1:
            m = (abs(yy - cy) < r * rng.uniform(0.3, 1.0)) & (abs(xx - cx) < r)
        else:
            m = (yy - cy > -r) & (abs(xx - cx) < (yy - cy + r) * 0.6) & (yy - cy < r)
        img[m] = c
    # Title: rows of bars like letters.
    y0 = int(h * rng.uniform(0.78, 0.85))
    for row in range(2):
        x = int(w * 0.08)
        y = y0 + row * int(h * 0.07)
        while x < w * 0.9:
            bw = int(rng.integers(2, max(3, w // 14)))
            img[y: y + int(h * 0.045), x: x + bw] = pal[5] * 0.2 if row == 0 else pal[4]
            x += bw + int(rng.integers(2, max(3, w // 30)))
    b = max(2, w // 40)
    img[:b], img[-b:], img[:, :b], img[:, -b:] = 0.95, 0.95, 0.95, 0.95
    return img


def painting(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A landscape-like painting [h, w, 3]: noise hills under a sky, with a sun and some trees."""
    pal = _palette(rng, 5)
    n = _noise(rng, h, w)
    yy, xx = np.mgrid[0:h, 0:w] / float(h)
    horizon = 0.45 + 0.15 * (_noise(rng, 1, w, 3)[0] - 0.5)
    sky = np.linspace(1.0, 0.6, h)[:, None, None] * (0.6 * pal[0] + 0.4)
    ground = (0.5 + 0.5 * n[..., None]) * pal[1]
    img = np.where((yy > horizon[None, :])[..., None], ground, sky)
    sy, sx = rng.uniform(0.1, 0.3), rng.uniform(0.2, 0.8) * w / h
    img[(yy - sy) ** 2 + (xx - sx) ** 2 < 0.008] = pal[2] * 0.3 + 0.7
    for _ in range(rng.integers(4, 9)):
        tx = rng.uniform(0.05, 0.95) * w / h
        ty = np.interp(tx * h, np.arange(w), horizon) + rng.uniform(0.0, 0.3)
        th = rng.uniform(0.1, 0.25)
        trunk = (abs(xx - tx) < 0.01) & (yy < ty) & (yy > ty - th * 0.4)
        crown = (xx - tx) ** 2 + ((yy - (ty - th * 0.6)) * 1.2) ** 2 < (th * 0.35) ** 2
        img[trunk] = 0.25 * pal[3]
        img[crown] = pal[4] * (0.6 + 0.4 * n[crown][:, None])
    return np.clip(img * (0.9 + 0.2 * _noise(rng, h, w, 6)[..., None] - 0.1), 0.0, 1.0)


#: Picture generators by name: ``fn(rng, height, width) -> [H, W, 3]`` sRGB in [0, 1].
PICTURES = {"poster": poster, "painting": painting}


def make_picture(kind: str, seed: int, aspect: float, size: int = 256) -> np.ndarray:
    """Picture ``kind`` from ``seed``: [H, W, 3] float32 sRGB in [0, 1], row 0 at the top, W = ``size``,
    H = round(size / aspect) where ``aspect`` = width / height."""
    h = max(8, int(round(size / aspect)))
    return PICTURES[kind](np.random.default_rng(seed), h, size).astype(np.float32)
