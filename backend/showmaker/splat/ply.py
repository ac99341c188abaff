"""Gaussian PLY files in the standard 3DGS layout, readable by other splat viewers and editors.

One ``vertex`` element of float32 properties, in this order:
``x y z`` (world centre), ``nx ny nz`` (zeros, kept for compatibility), ``f_dc_0..2`` (degree-0 SH),
``f_rest_0..f_rest_{3(K-1)-1}`` (higher SH bands, channel-major: the K-1 red coefficients, then green, then
blue), ``opacity`` (logit), ``scale_0..2`` (log), ``rot_0..3`` (quaternion w, x, y, z).
The SH degree (0-3) follows from the number of ``f_rest`` properties (0, 9, 24 or 45). Reading accepts
ASCII and binary files of either endianness, ignores extra properties and does not need the normals.
"""
from __future__ import annotations

import io
import os
import re

import numpy as np
import torch
from plyfile import PlyData, PlyElement, PlyParseError

from ..atomic import CorruptFileError, atomic_write_bytes
from .gaussians import GaussianSet
from .sh import sh_degree_from_bases

_REQUIRED = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
             "rot_0", "rot_1", "rot_2", "rot_3"]


def _property_names(n_rest: int) -> list[str]:
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(n_rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def save_ply(path: str | os.PathLike, gs: GaussianSet) -> None:
    """Write ``gs`` as a binary little-endian 3DGS PLY (float32), atomically."""
    n, k1 = len(gs), gs.shN.shape[1]
    cpu = lambda t: t.detach().to("cpu", torch.float32).numpy().reshape(n, -1)  # noqa: E731
    columns = np.concatenate([
        cpu(gs.means), np.zeros((n, 3), np.float32), cpu(gs.sh0),
        cpu(gs.shN.transpose(1, 2)),  # [N, 3, K-1] -> channel-major f_rest
        cpu(gs.opacity_logits), cpu(gs.log_scales), cpu(gs.quats),
    ], 1)
    names = _property_names(3 * k1)
    vertex = np.empty(n, dtype=[(name, "<f4") for name in names])
    for i, name in enumerate(names):
        vertex[name] = columns[:, i]
    buf = io.BytesIO()
    PlyData([PlyElement.describe(vertex, "vertex")], byte_order="<").write(buf)
    atomic_write_bytes(path, buf.getvalue())


def load_ply(path: str | os.PathLike, device="cpu") -> GaussianSet:
    """Read a 3DGS PLY (see the module docstring) into float32 tensors on ``device``."""
    try:
        ply = PlyData.read(str(path))
        vertex = ply["vertex"]
    except (PlyParseError, KeyError, ValueError, IndexError, EOFError, TypeError) as exc:
        raise CorruptFileError(f"{path}: not a readable PLY file with a 'vertex' element ({exc})") from exc
    names = {p.name for p in vertex.properties}
    missing = [p for p in _REQUIRED if p not in names]
    if missing:
        raise CorruptFileError(f"{path}: not a 3DGS Gaussian PLY, missing vertex properties: {', '.join(missing)}")
    rest = sorted((int(m.group(1)) for p in names if (m := re.fullmatch(r"f_rest_(\d+)", p))))
    if rest != list(range(len(rest))) or len(rest) % 3:
        raise CorruptFileError(f"{path}: f_rest properties must be f_rest_0..f_rest_<3m-1>, got {len(rest)}")
    k1 = len(rest) // 3
    try:
        sh_degree_from_bases(k1 + 1)
    except ValueError as exc:
        raise CorruptFileError(f"{path}: {len(rest)} f_rest properties fit no SH degree 0-3") from exc
    data = vertex.data
    col = lambda *ps: torch.from_numpy(np.stack([np.asarray(data[p], np.float32) for p in ps], 1))  # noqa: E731
    n = len(data)
    shN = col(*[f"f_rest_{i}" for i in range(3 * k1)]) if k1 else torch.zeros(n, 0)
    gs = GaussianSet(
        means=col("x", "y", "z"), quats=col("rot_0", "rot_1", "rot_2", "rot_3"),
        log_scales=col("scale_0", "scale_1", "scale_2"), opacity_logits=col("opacity")[:, 0],
        sh0=col("f_dc_0", "f_dc_1", "f_dc_2")[:, None, :], shN=shN.reshape(n, 3, k1).transpose(1, 2).contiguous())
    return gs.to(device)
