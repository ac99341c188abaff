"""Real spherical harmonics of degree 0-3 with the 3DGS / gsplat constants and sign convention.

A Gaussian's view-dependent colour is ``eval_sh(degree, dirs, coeffs) + 0.5`` clamped at 0, where ``dirs``
points from the camera centre to the Gaussian (world frame) and ``coeffs`` [..., K, 3] holds K >= (degree+1)^2
coefficients per colour channel (K = 1, 4, 9 or 16 stored; only the first (degree+1)^2 are used).
"""
from __future__ import annotations

import torch
from torch import Tensor

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)
MAX_SH_DEGREE = 3


def num_sh_bases(degree: int) -> int:
    """Number of SH coefficients per channel up to ``degree``: (degree + 1)^2."""
    return (degree + 1) ** 2


def sh_degree_from_bases(k: int) -> int:
    """Inverse of ``num_sh_bases``: the degree whose full set has ``k`` coefficients (1, 4, 9 or 16)."""
    degree = round(k ** 0.5) - 1
    if num_sh_bases(degree) != k or not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"{k} SH coefficients per channel is not a full set of degree 0-{MAX_SH_DEGREE}")
    return degree


def sh_bases(degree: int, dirs: Tensor) -> Tensor:
    """SH basis values at unit directions: dirs [..., 3] -> [..., (degree+1)^2] (3DGS ordering and signs)."""
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"SH degree must be 0-{MAX_SH_DEGREE}, got {degree}")
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [SH_C2[0] * x * y, SH_C2[1] * y * z, SH_C2[2] * (2 * zz - xx - yy), SH_C2[3] * x * z,
                SH_C2[4] * (xx - yy)]
    if degree >= 3:
        out += [SH_C3[0] * y * (3 * xx - yy), SH_C3[1] * x * y * z, SH_C3[2] * y * (4 * zz - xx - yy),
                SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy), SH_C3[4] * x * (4 * zz - xx - yy),
                SH_C3[5] * z * (xx - yy), SH_C3[6] * x * (xx - 3 * yy)]
    return torch.stack(out, -1)


def eval_sh(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Evaluate SH: dirs [..., 3] (any length, normalised here), coeffs [..., K, 3] -> [..., 3] (no +0.5)."""
    k = num_sh_bases(degree)
    if coeffs.shape[-2] < k:
        raise ValueError(f"SH degree {degree} needs {k} coefficients per channel, got {coeffs.shape[-2]}")
    dirs = torch.nn.functional.normalize(dirs, dim=-1)
    return (sh_bases(degree, dirs)[..., None] * coeffs[..., :k, :]).sum(-2)


def sh_to_color(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Colour as gsplat renders it: clamp_min(eval_sh + 0.5, 0). Shapes as ``eval_sh``."""
    return torch.clamp_min(eval_sh(degree, dirs, coeffs) + 0.5, 0.0)


def rgb_to_sh(rgb: Tensor) -> Tensor:
    """The degree-0 coefficient giving colour ``rgb`` (any shape): (rgb - 0.5) / C0."""
    return (rgb - 0.5) / SH_C0


def sh_to_rgb(sh0: Tensor) -> Tensor:
    """Inverse of ``rgb_to_sh``."""
    return sh0 * SH_C0 + 0.5
