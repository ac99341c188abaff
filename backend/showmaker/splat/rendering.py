"""``rasterization``: gsplat 1.5.3's public call, on gsplat (CUDA) or on the project's torch rasterizer.

Both paths follow gsplat's classic 3DGS conventions (see ``projection`` and ``raster``), so they render the
same image and fill ``meta`` with the same keys; a densification strategy can use either.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from .projection import project_gaussians
from .raster import RasterizeToPixels, RasterPlan
from .sh import sh_to_color
from .tiles import intersect_tiles

RenderMode = Literal["RGB", "D", "ED", "RGB+D", "RGB+ED"]
_TORCH_KWARGS = {"tile_size", "sparse_grad", "channel_chunk", "segmented", "camera_model"}  # the rest: gsplat only


def _gsplat():
    """The gsplat module when it imports (an optional extra; JIT-compiles its CUDA kernels), else None."""
    try:
        import gsplat
    except ImportError:
        return None
    return gsplat


def rasterization(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [N, D] | [C, N, D] | SH [N, K, 3] | [C, N, K, 3]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    eps2d: float = 0.3,
    sh_degree: int | None = None,
    packed: bool = False,
    backgrounds: Tensor | None = None,  # [C, D]
    render_mode: RenderMode = "RGB",
    absgrad: bool = False,
    rasterize_mode: Literal["classic", "antialiased"] = "classic",
    backend: Literal["auto", "gsplat", "torch"] = "auto",
    **kwargs,
) -> tuple[Tensor, Tensor, dict]:
    """Render N Gaussians into C images (gsplat 1.5.3 ``rasterization`` arguments and returns).

    Args:
        means: centres, world frame [N, 3]. quats: rotations (w, x, y, z), any norm [N, 4].
        scales: activated (linear) scales [N, 3]. opacities: activated opacities in [0, 1] [N].
        colors: post-activation features [N, D] or per camera [C, N, D]; with ``sh_degree`` SH coefficients
            [N, K, 3] or [C, N, K, 3], K >= (sh_degree + 1)^2, rendered as clamp_min(SH(dir) + 0.5, 0) with
            dir from the camera centre to the Gaussian.
        viewmats: world-to-camera [C, 4, 4] (OpenCV: x right, y down, z forward). Ks: pixel intrinsics [C, 3, 3].
        width, height: image size in pixels. near_plane, far_plane: depth range kept (camera z).
        radius_clip: Gaussians whose two screen radii are both <= this (pixels) are skipped.
        eps2d: added to the 2D covariance diagonal (about a 0.3-pixel blur; antialiased mode compensates).
        packed: meta arrays hold only the nnz visible (camera, Gaussian) pairs (gsplat's default is True;
            ours is False, the layout the densification code reads).
        backgrounds: colour behind the Gaussians [C, D] (depth channels use 0).
        render_mode: "RGB"; "D" accumulated depth sum(w z); "ED" expected depth sum(w z) / alpha; or
            "RGB+D" / "RGB+ED" with the depth as the last channel.
        absgrad: backward also stores the summed absolute 2D-mean gradients in ``meta["means2d"].absgrad``.
        rasterize_mode: "classic" or "antialiased" (opacities scaled by the eps2d compensation).
        backend: "auto" uses gsplat for CUDA tensors when it imports and the torch rasterizer otherwise.
        kwargs: other gsplat arguments, passed on to gsplat. The torch path uses ``tile_size`` (16), ignores
            ``sparse_grad``, ``channel_chunk`` and ``segmented``, takes ``camera_model="pinhole"`` only and
            rejects the rest (``distributed``, ``covars``, ...).

    The torch path matches gsplat's classic blending (alpha = min(0.999, opacity exp(-sigma)), skipped below
    1/255, stop before T <= 1e-4, depth order per 16-pixel tile) to float rounding; the one rule it does not
    copy is gsplat's skip of a Gaussian where rounding makes sigma slightly negative (at its very centre).

    Returns:
        render_colors [C, H, W, D or 1 or D+1], render_alphas [C, H, W, 1], meta: gsplat's intermediate
        results: "means2d" [C, N, 2] (call ``retain_grad()`` before backward to read its gradient),
        "radii" [C, N, 2] int32 (x and y pixel radii, 0 = culled), "depths" [C, N], "conics" [C, N, 3],
        "opacities" [C, N], "camera_ids" / "gaussian_ids" (packed: [nnz]; else None), "tiles_per_gauss",
        "isect_ids", "flatten_ids", "isect_offsets" [C, tile_height, tile_width], "width", "height",
        "tile_size", "tile_width", "tile_height", "n_cameras", "n_batches". Packed arrays are [nnz, ...].
    """
    if backend not in ("auto", "gsplat", "torch"):
        raise ValueError(f"unknown backend {backend!r}")
    gs = _gsplat() if backend != "torch" and means.is_cuda else None
    if backend == "gsplat" and gs is None:
        raise RuntimeError("backend='gsplat' needs CUDA tensors and the gsplat package (extra 'cuda')")
    if gs is not None:
        return gs.rasterization(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane=near_plane,
            far_plane=far_plane, radius_clip=radius_clip, eps2d=eps2d, sh_degree=sh_degree, packed=packed,
            backgrounds=backgrounds, render_mode=render_mode, absgrad=absgrad, rasterize_mode=rasterize_mode,
            **kwargs)
    unsupported = set(kwargs) - _TORCH_KWARGS
    if unsupported:
        raise TypeError(f"the torch rasterizer does not take {sorted(unsupported)}")
    if kwargs.get("camera_model", "pinhole") != "pinhole":
        raise NotImplementedError("the torch rasterizer renders pinhole cameras only")
    return _torch_rasterization(means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane,
                                far_plane, radius_clip, eps2d, sh_degree, packed, backgrounds, render_mode, absgrad,
                                rasterize_mode, kwargs.get("tile_size", 16))


def _check_shapes(means, quats, scales, opacities, colors, viewmats, Ks, sh_degree, render_mode, rasterize_mode):
    N, C = means.shape[0], viewmats.shape[0]
    if means.shape != (N, 3) or quats.shape != (N, 4) or scales.shape != (N, 3) or opacities.shape != (N,):
        raise ValueError(f"expected means [N, 3], quats [N, 4], scales [N, 3], opacities [N]; got "
                         f"{tuple(means.shape)}, {tuple(quats.shape)}, {tuple(scales.shape)}, {tuple(opacities.shape)}")
    if viewmats.shape != (C, 4, 4) or Ks.shape != (C, 3, 3):
        raise ValueError(f"expected viewmats [C, 4, 4] and Ks [C, 3, 3]; got {tuple(viewmats.shape)}, "
                         f"{tuple(Ks.shape)}")
    if sh_degree is None:
        ok = colors.shape[:-1] in ((N,), (C, N))
    else:
        ok = colors.shape[:-2] in ((N,), (C, N)) and colors.shape[-1] == 3 and colors.shape[-2] >= (sh_degree + 1) ** 2
    if not ok:
        raise ValueError(f"colors of shape {tuple(colors.shape)} do not fit N={N}, C={C}, sh_degree={sh_degree}")
    if render_mode not in ("RGB", "D", "ED", "RGB+D", "RGB+ED"):
        raise ValueError(f"unknown render_mode {render_mode!r}")
    if rasterize_mode not in ("classic", "antialiased"):
        raise ValueError(f"unknown rasterize_mode {rasterize_mode!r}")


def _torch_rasterization(means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane, far_plane,
                         radius_clip, eps2d, sh_degree, packed, backgrounds, render_mode, absgrad, rasterize_mode,
                         tile_size):
    _check_shapes(means, quats, scales, opacities, colors, viewmats, Ks, sh_degree, render_mode, rasterize_mode)
    N, C = means.shape[0], viewmats.shape[0]
    radii, means2d, depths, conics, comps = project_gaussians(
        means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near_plane, far_plane, radius_clip,
        calc_compensations=rasterize_mode == "antialiased")
    opac = opacities[None, :].expand(C, N)
    if comps is not None:
        opac = opac * comps
    if sh_degree is not None:
        campos = torch.linalg.inv(viewmats)[:, :3, 3]  # [C, 3]
        sh = colors if colors.dim() == 4 else colors[None].expand(C, -1, -1, -1)
        colors = sh_to_color(sh_degree, means[None] - campos[:, None], sh)  # [C, N, 3]
    elif colors.dim() == 2:
        colors = colors[None].expand(C, -1, -1)
    if render_mode in ("RGB+D", "RGB+ED"):
        colors = torch.cat([colors, depths[..., None]], -1)
        if backgrounds is not None:
            backgrounds = torch.cat([backgrounds, backgrounds.new_zeros(C, 1)], -1)
    elif render_mode in ("D", "ED"):
        colors = depths[..., None]
        backgrounds = None if backgrounds is None else backgrounds.new_zeros(C, 1)

    camera_ids = gaussian_ids = None
    if packed:
        camera_ids, gaussian_ids = (radii > 0).all(-1).nonzero(as_tuple=True)
        radii, means2d, depths, conics = (radii[camera_ids, gaussian_ids], means2d[camera_ids, gaussian_ids],
                                          depths[camera_ids, gaussian_ids], conics[camera_ids, gaussian_ids])
        opac, colors = opac[camera_ids, gaussian_ids], colors[camera_ids, gaussian_ids]
        image_ids = camera_ids
    else:
        opac = opac.contiguous()
        image_ids = torch.arange(C, device=means.device).repeat_interleave(N)
    isect = intersect_tiles(means2d.detach().reshape(-1, 2), radii.reshape(-1, 2), depths.detach().reshape(-1),
                            conics.detach().reshape(-1, 3), opac.detach().reshape(-1), image_ids, C, width, height,
                            tile_size)
    plan = RasterPlan.build(isect, C, width, height)
    render_colors, render_alphas = RasterizeToPixels.apply(
        means2d, conics, colors.reshape(-1, colors.shape[-1]), opac, backgrounds, plan, absgrad)
    if render_mode in ("ED", "RGB+ED"):
        expected_depth = render_colors[..., -1:] / render_alphas.clamp(min=1e-10)
        render_colors = torch.cat([render_colors[..., :-1], expected_depth], -1)

    meta = {
        "batch_ids": None, "camera_ids": camera_ids, "gaussian_ids": gaussian_ids, "radii": radii,
        "means2d": means2d, "depths": depths, "conics": conics, "opacities": opac,
        "tile_width": isect.tile_width, "tile_height": isect.tile_height,
        "tiles_per_gauss": isect.tiles_per_gauss.reshape(radii.shape[:-1]), "isect_ids": isect.isect_ids,
        "flatten_ids": isect.flatten_ids, "isect_offsets": isect.isect_offsets, "width": width, "height": height,
        "tile_size": tile_size, "n_batches": 1, "n_cameras": C,
    }
    return render_colors, render_alphas, meta
