"""Image and depth losses of the stage and actor training (METHOD.md eq. 5-7).

All images are [B, H, W, C] float (as the rasterizer returns them); masks are [B, H, W] bool or float
weights. A masked mean divides by the mask's sum, so an empty mask gives 0 (and no NaN).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``x`` [B, H, W, ...] over pixels where ``mask`` [B, H, W] is set."""
    if mask is None:
        return x.mean()
    m = mask.to(x.dtype)
    while m.dim() < x.dim():
        m = m.unsqueeze(-1)
    m = m.expand_as(x)
    return (x * m).sum() / m.sum().clamp_min(1.0)


def l1_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Masked mean absolute error."""
    return _masked_mean((pred - target).abs(), mask)


def _gaussian_window(size: int, sigma: float, device, dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


def ssim_map(pred: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM [B, H, W, C] of images [B, H, W, C] in [0, 1] (Gaussian 11x11 window, as in 3DGS),
    computed with separable convolutions and zero ('same') padding."""
    B, H, W, C = pred.shape
    x = pred.permute(0, 3, 1, 2).reshape(B * C, 1, H, W)
    y = target.permute(0, 3, 1, 2).reshape(B * C, 1, H, W)
    g = _gaussian_window(window, sigma, pred.device, pred.dtype)
    gx, gy = g.view(1, 1, 1, -1), g.view(1, 1, -1, 1)
    pad = window // 2

    def blur(t):
        return F.conv2d(F.conv2d(t, gx, padding=(0, pad)), gy, padding=(pad, 0))

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x * mu_x
    syy = blur(y * y) - mu_y * mu_y
    sxy = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (sxx + syy + c2))
    return s.reshape(B, C, H, W).permute(0, 2, 3, 1)


def ssim(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean SSIM over the (masked) pixels."""
    return _masked_mean(ssim_map(pred, target), mask)


def photometric_loss(pred, target, mask=None, lambda_ssim: float = 0.2) -> torch.Tensor:
    """3DGS photometric loss (1 - l) L1 + l (1 - SSIM) on masked pixels (eq. 7's first two terms).

    Masked-out pixels of both images are set equal before SSIM so that they add no structure.
    """
    if mask is not None:
        m = mask.to(pred.dtype).unsqueeze(-1)
        pred_ssim, target_ssim = pred * m, target * m
    else:
        pred_ssim, target_ssim = pred, target
    return (1 - lambda_ssim) * l1_loss(pred, target, mask) + lambda_ssim * (1 - ssim(pred_ssim, target_ssim, mask))


def depth_log_l1(pred_depth: torch.Tensor, target_depth: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 5 (DN-Splatter's log-L1): mean of log(1 + |D - D^|) over ``mask``; depths [B, H, W] or
    [B, H, W, 1]. Pixels with a non-finite or non-positive target are ignored."""
    if pred_depth.dim() == 4:
        pred_depth = pred_depth[..., 0]
    if target_depth.dim() == 4:
        target_depth = target_depth[..., 0]
    valid = torch.isfinite(target_depth) & (target_depth > 0)
    mask = valid if mask is None else (mask.bool() & valid)
    diff = (pred_depth - torch.where(valid, target_depth, pred_depth.detach())).abs()
    return _masked_mean(torch.log1p(diff), mask)


def depth_tv(depth: torch.Tensor) -> torch.Tensor:
    """Eq. 6: total variation of a rendered depth map [B, H, W] or [B, H, W, 1] (mean absolute
    difference between horizontal and vertical neighbours)."""
    if depth.dim() == 4:
        depth = depth[..., 0]
    dx = (depth[:, :, 1:] - depth[:, :, :-1]).abs().mean()
    dy = (depth[:, 1:, :] - depth[:, :-1, :]).abs().mean()
    return dx + dy


def psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """PSNR in dB of images in [0, 1] over the (masked) pixels."""
    mse = _masked_mean((pred - target) ** 2, mask)
    return -10.0 * torch.log10(mse.clamp_min(1e-12))
