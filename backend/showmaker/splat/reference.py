"""Brute-force reference renderer for tests (tiny sizes only): every Gaussian at every pixel, plain autograd.

Written independently of ``projection`` / ``raster`` from the gsplat 1.5.3 rules: full 3x3 / 2x3 matrices
(Sigma = R S S^T R^T, Sigma_c = W Sigma W^T, Sigma_2d = J Sigma_c J^T + eps2d I, conic = inverse), no tiles,
and a sequential front-to-back loop over the depth-sorted Gaussians with the 1/255 skip, the 0.999 clamp and
the stop before T <= 1e-4. Same arguments and outputs as ``rasterization`` (meta: radii, means2d, depths,
conics only); pinhole, unpacked.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .projection import ALPHA_THRESHOLD, MAX_ALPHA, MAX_EXTENT, TRANSMITTANCE_THRESHOLD
from .sh import sh_to_color


def _rotation(q: Tensor) -> Tensor:
    """[N, 4] (w, x, y, z) -> [N, 3, 3], via R = (w^2 - v.v) I + 2 v v^T + 2 w [v]x on the unit quaternion."""
    q = q / q.norm(dim=-1, keepdim=True)
    w, v = q[:, :1, None], q[:, 1:]
    cross = torch.zeros(len(q), 3, 3, dtype=q.dtype, device=q.device)
    cross[:, 0, 1], cross[:, 0, 2], cross[:, 1, 2] = -v[:, 2], v[:, 1], -v[:, 0]
    cross = cross - cross.transpose(1, 2)
    eye = torch.eye(3, dtype=q.dtype, device=q.device)
    return (w * w - (v * v).sum(-1)[:, None, None]) * eye + 2 * v[:, :, None] * v[:, None, :] + 2 * w * cross


def _project(means, quats, scales, opacities, viewmat, K, width, height, eps2d, near, far, radius_clip, aa):
    """One camera: -> means2d [N, 2], conics [N, 2, 2], depths [N], opacities [N], radii [N, 2], valid [N]."""
    R = _rotation(quats)
    cov = R @ torch.diag_embed(scales * scales) @ R.transpose(1, 2)
    W, t = viewmat[:3, :3], viewmat[:3, 3]
    p = means @ W.T + t
    cov_c = W @ cov @ W.T
    x, y, z = p.unbind(-1)
    valid = (z >= near) & (z <= far)
    z = torch.where(valid, z, torch.ones_like(z))
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    tx = z * torch.clamp(x / z, -(cx / fx + 0.15 * width / fx), (width - cx) / fx + 0.15 * width / fx)
    ty = z * torch.clamp(y / z, -(cy / fy + 0.15 * height / fy), (height - cy) / fy + 0.15 * height / fy)
    J = torch.zeros(len(p), 2, 3, dtype=p.dtype, device=p.device)
    J[:, 0, 0], J[:, 0, 2] = fx / z, -fx * tx / (z * z)
    J[:, 1, 1], J[:, 1, 2] = fy / z, -fy * ty / (z * z)
    cov2 = J @ cov_c @ J.transpose(1, 2)
    blurred = cov2 + eps2d * torch.eye(2, dtype=p.dtype, device=p.device)
    det = torch.linalg.det(blurred)
    valid = valid & (det > 0)
    blurred = torch.where(valid[:, None, None], blurred, torch.eye(2, dtype=p.dtype, device=p.device))
    if aa:
        opacities = opacities * torch.sqrt(torch.clamp_min(torch.linalg.det(cov2) / torch.linalg.det(blurred), 0))
    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], -1)
    with torch.no_grad():
        extent = torch.clamp_max(torch.sqrt(2 * torch.log(opacities.clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD)),
                                 MAX_EXTENT)
        radii = torch.ceil(extent[:, None] * torch.sqrt(torch.diagonal(blurred, dim1=1, dim2=2)))
        lo, hi = means2d - radii, means2d + radii
        on_image = (hi[:, 0] > 0) & (lo[:, 0] < width) & (hi[:, 1] > 0) & (lo[:, 1] < height)
        valid = valid & (opacities >= ALPHA_THRESHOLD) & (radii > radius_clip).any(-1) & on_image
        radii = radii * valid[:, None]
    return means2d, torch.linalg.inv(blurred), p[:, 2], opacities, radii.int(), valid


def _blend(means2d, conics, depths, opacities, colors, valid, width, height, background):
    """Front-to-back blend of the valid Gaussians at every pixel: -> colour [H, W, D], alpha [H, W, 1]."""
    ys, xs = torch.meshgrid(torch.arange(height, dtype=means2d.dtype, device=means2d.device) + 0.5,
                            torch.arange(width, dtype=means2d.dtype, device=means2d.device) + 0.5, indexing="ij")
    pix = torch.stack([xs.flatten(), ys.flatten()], -1)  # [P, 2]
    T = torch.ones(len(pix), dtype=means2d.dtype, device=means2d.device)
    done = torch.zeros(len(pix), dtype=torch.bool, device=means2d.device)
    out = torch.zeros(len(pix), colors.shape[-1], dtype=means2d.dtype, device=means2d.device)
    idx = valid.nonzero().squeeze(1)
    for i in idx[torch.argsort(depths[idx], stable=True)].tolist():
        dx, dy = means2d[i, 0] - pix[:, 0], means2d[i, 1] - pix[:, 1]  # [P]
        sigma = 0.5 * (conics[i, 0, 0] * dx * dx + conics[i, 1, 1] * dy * dy) + conics[i, 0, 1] * dx * dy
        alpha = torch.clamp_max(opacities[i] * torch.exp(-sigma), MAX_ALPHA)
        use = ~done & (sigma >= 0) & (alpha >= ALPHA_THRESHOLD)
        next_T = T * (1 - alpha)
        stop = use & (next_T <= TRANSMITTANCE_THRESHOLD)
        use &= ~stop
        done |= stop
        out = out + torch.where(use, alpha * T, 0)[:, None] * colors[i]
        T = torch.where(use, next_T, T)
    if background is not None:
        out = out + T[:, None] * background
    return out.reshape(height, width, -1), (1 - T).reshape(height, width, 1)


def reference_rasterization(means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane=0.01,
                            far_plane=1e10, radius_clip=0.0, eps2d=0.3, sh_degree=None, backgrounds=None,
                            render_mode="RGB", rasterize_mode="classic"):
    """Brute-force ``rasterization`` (see the module docstring); returns (colors, alphas, meta) with meta
    "radii", "means2d" (its gradient readable after ``retain_grad``), "depths", "conics" [C, N, 3]."""
    C = viewmats.shape[0]
    proj = [_project(means, quats, scales, opacities, viewmats[c], Ks[c], width, height, eps2d, near_plane, far_plane,
                     radius_clip, rasterize_mode == "antialiased") for c in range(C)]
    means2d, conics, depths, opacs, radii, valid = (torch.stack(t) for t in zip(*proj))
    campos = torch.linalg.inv(viewmats)[:, :3, 3]
    renders, alphas = [], []
    for c in range(C):
        col = colors[c] if colors.dim() == (3 if sh_degree is None else 4) else colors
        if sh_degree is not None:
            col = sh_to_color(sh_degree, means - campos[c], col)
        bg = None if backgrounds is None else backgrounds[c]
        if render_mode in ("D", "ED"):
            col, bg = depths[c][:, None], None if bg is None else bg.new_zeros(1)
        elif render_mode in ("RGB+D", "RGB+ED"):
            col, bg = torch.cat([col, depths[c][:, None]], -1), None if bg is None else torch.cat([bg, bg.new_zeros(1)])
        out, alpha = _blend(means2d[c], conics[c], depths[c], opacs[c], col, valid[c], width, height, bg)
        if render_mode in ("ED", "RGB+ED"):
            out = torch.cat([out[..., :-1], out[..., -1:] / alpha.clamp(min=1e-10)], -1)
        renders.append(out)
        alphas.append(alpha)
    meta = {"radii": radii, "means2d": means2d, "depths": depths,
            "conics": torch.stack([conics[..., 0, 0], conics[..., 0, 1], conics[..., 1, 1]], -1)}
    return torch.stack(renders), torch.stack(alphas), meta
