"""EWA projection of 3D Gaussians to 2D screen-space Gaussians (gsplat 1.5.3 ``fully_fused_projection``,
pinhole camera, classic or antialiased mode), in torch with a hand-written backward.

Frames: ``means`` are world coordinates; ``viewmats`` [C, 4, 4] map world to camera (OpenCV: x right,
y down, z forward); ``Ks`` [C, 3, 3] are pixel intrinsics (fx, fy, cx, cy used; skew ignored as in gsplat).
Pixel (i, j) has its centre at (j + 0.5, i + 0.5).

With R the rotation of the (normalised) quaternion, M = R diag(scales) and W, t the camera rotation and
translation: the camera-frame centre is p = W mean + t, the camera-frame covariance (W M)(W M)^T, and the 2D
covariance (J W M)(J W M)^T + eps2d I with the EWA Jacobian J = [[fx/z, 0, -fx tu/z], [0, fy/z, -fy tv/z]],
where tu, tv are x/z, y/z clamped to the frustum widened by 30 %.
"""
from __future__ import annotations

import torch
from torch import Tensor

ALPHA_THRESHOLD = 1.0 / 255.0  # a Gaussian is skipped at a pixel where its alpha is below this
MAX_ALPHA = 0.999  # per-Gaussian alpha clamp
TRANSMITTANCE_THRESHOLD = 1e-4  # a pixel stops before the Gaussian that would bring T to this or below
MAX_EXTENT = 3.33  # bounding-box half-size in standard deviations (before the opacity-aware bound)
FRUSTUM_MARGIN = 0.3  # Jacobian x/z, y/z clamped to the frustum widened by this fraction of its half-size


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices from quaternions: quats [..., 4] (w, x, y, z; normalised here) -> [..., 3, 3]."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).reshape(quats.shape[:-1] + (3, 3))


def _quat_to_rotmat_vjp(quats: Tensor, v_R: Tensor) -> Tensor:
    """Gradient w.r.t. the (unnormalised) quats [N, 4] of <v_R, quat_to_rotmat(quats)>, v_R [N, 3, 3]."""
    norm = quats.norm(dim=-1, keepdim=True)
    w, x, y, z = (quats / norm).unbind(-1)
    g = v_R.reshape(-1, 9).unbind(-1)  # g[3 i + j] = dL/dR_ij
    v_n = 2 * torch.stack([
        x * (g[7] - g[5]) + y * (g[2] - g[6]) + z * (g[3] - g[1]),
        -2 * x * (g[4] + g[8]) + y * (g[1] + g[3]) + z * (g[2] + g[6]) + w * (g[7] - g[5]),
        x * (g[1] + g[3]) - 2 * y * (g[0] + g[8]) + z * (g[5] + g[7]) + w * (g[2] - g[6]),
        x * (g[2] + g[6]) + y * (g[5] + g[7]) - 2 * z * (g[0] + g[4]) + w * (g[3] - g[1]),
    ], -1)
    qn = quats / norm
    return (v_n - qn * (qn * v_n).sum(-1, keepdim=True)) / norm  # through the normalisation


def _limits(Ks: Tensor, width: int, height: int) -> tuple[Tensor, ...]:
    """fx, fy, cx, cy [C, 1] and the Jacobian's clamp range for x/z and y/z."""
    fx, fy, cx, cy = Ks[:, 0, 0, None], Ks[:, 1, 1, None], Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    mx, my = FRUSTUM_MARGIN * 0.5 * width / fx, FRUSTUM_MARGIN * 0.5 * height / fy
    return fx, fy, cx, cy, -(cx / fx + mx), (width - cx) / fx + mx, -(cy / fy + my), (height - cy) / fy + my


def _forward(means, quats, scales, viewmats, Ks, width, height, eps2d):
    """Every intermediate of the projection of N Gaussians into C cameras (see the module docstring)."""
    R = quat_to_rotmat(quats)  # [N, 3, 3]
    M = R * scales[:, None, :]
    W, t = viewmats[:, :3, :3], viewmats[:, :3, 3]
    p = torch.einsum("cij,nj->cni", W, means) + t[:, None, :]  # [C, N, 3]
    Mc = torch.einsum("cij,njk->cnik", W, M)  # [C, N, 3, 3]
    fx, fy, cx, cy, u_lo, u_hi, v_lo, v_hi = _limits(Ks, width, height)
    x, y, z = p.unbind(-1)
    z = torch.where(z > 0, z, torch.ones_like(z))  # behind the camera: culled, kept finite
    u, v = x / z, y / z
    tu, tv = torch.clamp(u, u_lo, u_hi), torch.clamp(v, v_lo, v_hi)
    j0 = (fx / z)[..., None] * (Mc[..., 0, :] - tu[..., None] * Mc[..., 2, :])  # rows of J W M: [C, N, 3]
    j1 = (fy / z)[..., None] * (Mc[..., 1, :] - tv[..., None] * Mc[..., 2, :])
    cxx, cxy, cyy = (j0 * j0).sum(-1) + eps2d, (j0 * j1).sum(-1), (j1 * j1).sum(-1) + eps2d
    return dict(R=R, M=M, W=W, p=p, Mc=Mc, fx=fx, fy=fy, cx=cx, cy=cy, x=x, y=y, z=z, u=u, v=v, tu=tu, tv=tv,
                u_in=(u >= u_lo) & (u <= u_hi), v_in=(v >= v_lo) & (v <= v_hi), j0=j0, j1=j1, cxx=cxx, cxy=cxy,
                cyy=cyy, det=cxx * cyy - cxy * cxy, det0=(cxx - eps2d) * (cyy - eps2d) - cxy * cxy)


def _cull(f: dict, opacities: Tensor, width: int, height: int, near_plane: float, far_plane: float,
          radius_clip: float, calc_compensations: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """gsplat's culling and opacity-aware radii: -> (valid [C, N], radii [C, N, 2] int32, compensations)."""
    depth = f["p"][..., 2]
    valid = (depth >= near_plane) & (depth <= far_plane) & (f["det"] > 0)
    det = torch.where(valid, f["det"], torch.ones_like(f["det"]))
    comps = torch.sqrt(torch.clamp_min(f["det0"] / det, 0.0)) if calc_compensations else None
    opac = opacities[None, :] if comps is None else opacities[None, :] * comps
    valid &= opac >= ALPHA_THRESHOLD
    extent = torch.clamp_max(torch.sqrt(2.0 * torch.log(opac.clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD)),
                             MAX_EXTENT)
    rx = torch.ceil(extent * torch.sqrt(f["cxx"].clamp_min(0)))
    ry = torch.ceil(extent * torch.sqrt(f["cyy"].clamp_min(0)))
    valid &= (rx > radius_clip) | (ry > radius_clip)
    mx, my = f["fx"] * f["u"] + f["cx"], f["fy"] * f["v"] + f["cy"]
    valid &= (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
    return valid, (torch.stack([rx, ry], -1) * valid[..., None]).to(torch.int32), comps


_SAVED = ("R", "M", "W", "Mc", "x", "y", "z", "tu", "tv", "u_in", "v_in", "j0", "j1", "cxx", "cxy", "cyy", "det0")


class _Projection(torch.autograd.Function):
    """(means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near, far, radius_clip,
    compensations?) -> (radii, means2d, depths, conics, compensations | None) as ``project_gaussians``."""

    @staticmethod
    def forward(ctx, means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near_plane, far_plane,
                radius_clip, calc_compensations):
        f = _forward(means, quats, scales, viewmats, Ks, width, height, eps2d)
        valid, radii, comps = _cull(f, opacities, width, height, near_plane, far_plane, radius_clip,
                                    calc_compensations)
        keep = valid.to(means.dtype)
        det = torch.where(valid, f["det"], torch.ones_like(f["det"]))
        means2d = torch.stack([f["fx"] * f["u"] + f["cx"], f["fy"] * f["v"] + f["cy"]], -1) * keep[..., None]
        conics = torch.stack([f["cyy"], -f["cxy"], f["cxx"]], -1) / det[..., None] * keep[..., None]
        ctx.save_for_backward(quats, scales, means, keep, det, *(f[k] for k in _SAVED))
        ctx.fxy, ctx.eps2d = (f["fx"], f["fy"]), eps2d
        ctx.mark_non_differentiable(radii)
        return radii, means2d, f["p"][..., 2] * keep, conics, None if comps is None else comps * keep

    @staticmethod
    def backward(ctx, _, v_means2d, v_depths, v_conics, v_comps):
        quats, scales, means, keep, det, *saved = ctx.saved_tensors
        f = dict(zip(_SAVED, saved))
        z, x, y = f["z"], f["x"], f["y"]
        fx, fy = ctx.fxy
        # conic = inverse(Sigma2d): dL/dSigma = -P G P, with G the symmetric conic gradient.
        ga, gb, gc = (v_conics * keep[..., None]).unbind(-1)
        pa, pb, pc = f["cyy"] / det, -f["cxy"] / det, f["cxx"] / det
        gb = 0.5 * gb
        pg00, pg01, pg10, pg11 = pa * ga + pb * gb, pa * gb + pb * gc, pb * ga + pc * gb, pb * gb + pc * gc
        v_xx = -(pg00 * pa + pg01 * pb)
        v_xy = -(pg00 * pb + pg01 * pc) - (pg10 * pa + pg11 * pb)  # both off-diagonal entries
        v_yy = -(pg10 * pb + pg11 * pc)
        if v_comps is not None:  # comp = sqrt(det0 / det)
            d0, e = f["det0"], ctx.eps2d
            comp = torch.sqrt(torch.clamp_min(d0 / det, 0.0))
            g = torch.where(comp > 0, 0.5 * v_comps * keep / (comp * det * det), torch.zeros_like(comp))
            v_xx = v_xx + g * ((f["cyy"] - e) * det - d0 * f["cyy"])
            v_yy = v_yy + g * ((f["cxx"] - e) * det - d0 * f["cxx"])
            v_xy = v_xy + g * (-2 * f["cxy"] * det + 2 * d0 * f["cxy"])
        # Sigma2d = T T^T with rows j0, j1 of T = J W M.
        v_j0 = 2 * v_xx[..., None] * f["j0"] + v_xy[..., None] * f["j1"]
        v_j1 = 2 * v_yy[..., None] * f["j1"] + v_xy[..., None] * f["j0"]
        Mc, tu, tv = f["Mc"], f["tu"], f["tv"]
        a0, a1 = (fx / z)[..., None] * v_j0, (fy / z)[..., None] * v_j1
        v_Mc = torch.stack([a0, a1, -tu[..., None] * a0 - tv[..., None] * a1], -2)  # [C, N, 3, 3]
        v_tu, v_tv = -(a0 * Mc[..., 2, :]).sum(-1), -(a1 * Mc[..., 2, :]).sum(-1)
        v_tu, v_tv = v_tu * f["u_in"], v_tv * f["v_in"]  # no gradient through a clamped x/z, y/z
        gmx, gmy = (v_means2d * keep[..., None]).unbind(-1)
        v_u, v_v = fx * gmx + v_tu, fy * gmy + v_tv
        v_z = (v_depths * keep - ((v_j0 * f["j0"]).sum(-1) + (v_j1 * f["j1"]).sum(-1)) / z
               - (v_u * x + v_v * y) / (z * z))
        v_p = torch.stack([v_u / z, v_v / z, v_z], -1)  # [C, N, 3]
        W, M, R = f["W"], f["M"], f["R"]
        v_M = torch.einsum("cij,cnik->njk", W, v_Mc)
        v_means = torch.einsum("cij,cni->nj", W, v_p)
        v_scales = (v_M * R).sum(1)
        v_quats = _quat_to_rotmat_vjp(quats, v_M * scales[:, None, :])
        v_view = None
        if ctx.needs_input_grad[4]:
            v_view = torch.zeros(W.shape[0], 4, 4, dtype=W.dtype, device=W.device)
            v_view[:, :3, :3] = torch.einsum("cni,nj->cij", v_p, means) + torch.einsum("cnik,njk->cij", v_Mc, M)
            v_view[:, :3, 3] = v_p.sum(1)
        return (v_means, v_quats, v_scales) + (None, v_view) + (None,) * 8


def project_gaussians(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    calc_compensations: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    """Project N Gaussians into C cameras.

    Returns (radii [C, N, 2] int32, means2d [C, N, 2] pixels, depths [C, N] camera z, conics [C, N, 3]
    (upper triangle a, b, c of the inverse 2D covariance), compensations [C, N] | None).

    As gsplat: a Gaussian is culled (radii 0, other outputs 0) when its depth is outside [near, far], its
    blurred 2D covariance is not positive definite, its opacity (times the compensation when computed) is
    below 1/255, both radii are <= ``radius_clip``, or its box misses the image. Per-axis radii are
    ceil(extent * sqrt(Sigma2d_xx)) and ceil(extent * sqrt(Sigma2d_yy)) with extent =
    min(3.33, sqrt(2 ln(255 opacity))): the box holds every pixel where alpha can reach 1/255.
    Differentiable w.r.t. means, quats, scales and viewmats (not Ks, nor opacities through the radii); the
    backward is hand-written and keeps ~40 floats per (camera, Gaussian) instead of autograd's graph.
    """
    return _Projection.apply(means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near_plane,
                             far_plane, radius_clip, calc_compensations)
