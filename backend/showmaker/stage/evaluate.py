"""Stage accuracy on held-out views: PSNR / SSIM on background pixels, and rendered depth against ground
truth (METHOD.md "How the paper evaluates": human areas excluded).

Depth is compared in the ground truth's units: the estimated world differs from the true one by a
similarity (SfM's gauge), whose scale ``s`` the caller provides (the oracle records it; on real data a
similarity fit of the cameras gives it), so ``s * D_rendered`` is compared with the true depth.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..splat.losses import psnr, ssim
from .train import render


@dataclass
class StageScores:
    """Means over the held-out frames: psnr (dB), ssim, depth_abs_rel (mean |d - d*| / d*), depth_rmse
    (ground-truth units, metres on the synthetic clip), coverage (fraction of background pixels with
    rendered alpha > 0.5), n_frames."""

    psnr: float
    ssim: float
    depth_abs_rel: float
    depth_rmse: float
    coverage: float
    n_frames: int

    def as_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def evaluate_views(params, frames, masks, Ks, viewmats, gt_depths, frame_ids, sh_degree: int, gt_scale: float = 1.0) -> StageScores:
    """Score the trained stage ``params`` on ``frame_ids``.

    frames [F, H, W, 3] uint8; masks [F, H, W] instance ids (0 = stage); Ks [F, 3, 3]; viewmats [F, 4, 4]
    (the stage's frame); gt_depths [F, H, W] ground-truth depth or None; gt_scale: ground-truth units per
    stage unit.
    """
    if not frame_ids:
        raise ValueError("no held-out frames to evaluate (set holdout_every > 0)")
    H, W = frames.shape[1:3]
    ps, ss, rel, sq, cov = [], [], [], [], []
    for f in frame_ids:
        rgb, depth, alpha, _ = render(params, torch.as_tensor(viewmats[f:f + 1], dtype=torch.float32),
                                      torch.as_tensor(Ks[f:f + 1], dtype=torch.float32), W, H, sh_degree, "RGB+ED")
        target = torch.as_tensor(frames[f:f + 1], dtype=torch.float32) / 255.0
        bg = torch.as_tensor(masks[f:f + 1] == 0)
        ps.append(float(psnr(rgb.clamp(0, 1), target, bg)))
        ss.append(float(ssim(rgb.clamp(0, 1) * bg[..., None], target * bg[..., None], bg)))
        covered = bg & (alpha[..., 0] > 0.5)
        cov.append(float(covered.sum() / bg.sum().clamp_min(1)))
        if gt_depths is not None:
            gt = torch.tensor(np.asarray(gt_depths[f:f + 1]), dtype=torch.float32)
            ok = covered & torch.isfinite(gt) & (gt > 0)
            d = depth[..., 0] * gt_scale
            rel.append(float(((d - gt).abs() / gt)[ok].mean()))
            sq.append(float(((d - gt) ** 2)[ok].mean()))
    return StageScores(
        psnr=float(np.mean(ps)), ssim=float(np.mean(ss)),
        depth_abs_rel=float(np.mean(rel)) if rel else float("nan"),
        depth_rmse=float(np.sqrt(np.mean(sq))) if sq else float("nan"),
        coverage=float(np.mean(cov)), n_frames=len(frame_ids),
    )
