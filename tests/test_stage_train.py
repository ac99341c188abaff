"""Stage training (METHOD eq. 4-7) on a small Gaussian scene with known images and depth."""
import dataclasses

import numpy as np
import pytest
import torch

from showmaker.atomic import atomic_torch_save, load_torch
from showmaker.geometry import fov_to_K, look_at_viewmat
from showmaker.splat.losses import psnr
from showmaker.stage.train import StageTrainConfig, StageTrainer, StageViews, render

H, W = 36, 48


def _scene():
    """A checkered floor (z = 0) and back wall (y = 2) as small Gaussians; 5 cameras; rendered truth."""
    g = torch.Generator().manual_seed(0)
    u = torch.linspace(-1.5, 1.5, 40)
    fx, fy = torch.meshgrid(u, u, indexing="ij")
    floor = torch.stack([fx.flatten(), fy.flatten() * 0.7 + 0.6, torch.zeros(fx.numel())], -1)
    wall = torch.stack([fx.flatten(), torch.full((fx.numel(),), 2.0), fy.flatten() * 0.6 + 0.9], -1)
    means = torch.cat([floor, wall])
    checker = ((torch.floor(means[:, 0] * 3) + torch.floor(means[:, 1] * 3 + means[:, 2] * 3)) % 2)
    colors = torch.stack([0.2 + 0.6 * checker, 0.3 + 0.2 * (means[:, 2] > 0.01).float(), 0.8 - 0.6 * checker], -1)
    gt = {
        "means": means, "quats": torch.tensor([1.0, 0, 0, 0]).repeat(len(means), 1),
        "scales": torch.log(torch.full((len(means), 3), 0.05)), "opacities": torch.full((len(means),), 4.0),
        "sh0": ((colors - 0.5) / 0.28209479177387814)[:, None], "shN": torch.zeros(len(means), 0, 3),
    }
    K = torch.tensor(fov_to_K(70, W, H), dtype=torch.float32)
    vms = torch.tensor(np.stack([look_at_viewmat([x, -2.2, 1.2], [0, 1.0, 0.4]) for x in (-0.8, -0.4, 0, 0.4, 0.8)]),
                       dtype=torch.float32)
    Ks = K.repeat(5, 1, 1)
    with torch.no_grad():
        rgb, depth, _, _ = render(gt, vms, Ks, W, H, 0, "RGB+ED")
    pts = means[torch.randperm(len(means), generator=g)[:300]] + 0.05 * torch.randn(300, 3, generator=g)
    return rgb.clamp(0, 1), depth[..., 0], Ks, vms, pts.numpy(), np.full((300, 3), 0.5)


@pytest.fixture(scope="module")
def scene():
    return _scene()


def _views(scene, idx, depth=True):
    rgb, depth_gt, Ks, vms, _, _ = scene
    return StageViews(images=rgb[idx], masks=torch.ones(len(idx), H, W, dtype=torch.bool), Ks=Ks[idx],
                      viewmats=vms[idx], depths=depth_gt[idx] if depth else None)


def _cfg(**kw):
    return dataclasses.replace(StageTrainConfig.preset("tiny"), **kw)


def test_training_fits_held_out_view(scene):
    rgb, depth_gt, Ks, vms, pts, cols = scene
    trainer = StageTrainer(_views(scene, [0, 1, 3, 4]), pts, cols, scene_scale=2.0, cfg=_cfg(iterations=120))
    with torch.no_grad():
        before, _, _, _ = render(trainer.params, vms[2:3], Ks[2:3], W, H, 0, "RGB")
    params = trainer.train(show_bar=False)
    with torch.no_grad():
        after, d_after, _, _ = render(params, vms[2:3], Ks[2:3], W, H, 1, "RGB+ED")
    p0, p1 = float(psnr(before.clamp(0, 1), rgb[2:3])), float(psnr(after.clamp(0, 1), rgb[2:3]))
    assert p1 > p0 + 4.0, (p0, p1)
    assert p1 > 17.0
    assert trainer.history[-1]["loss"] < trainer.history[0]["loss"]


def test_depth_guidance_lowers_depth_error(scene):
    rgb, depth_gt, Ks, vms, pts, cols = scene
    errs = {}
    for guided in (False, True):
        cfg = _cfg(iterations=100, depth_guidance=guided, lambda_depth=1.0)
        params = StageTrainer(_views(scene, [1, 2, 3], depth=guided), pts, cols, 2.0, cfg).train(show_bar=False)
        with torch.no_grad():
            _, d, a, _ = render(params, vms[[0, 4]], Ks[[0, 4]], W, H, 1, "RGB+ED")
        ok = a[..., 0] > 0.5
        errs[guided] = float(((d[..., 0] - depth_gt[[0, 4]]).abs() / depth_gt[[0, 4]])[ok].mean())
    print(errs)
    assert errs[True] < errs[False], errs


def test_resume_from_checkpoint_matches_uninterrupted_run(scene, tmp_path):
    _, _, _, _, pts, cols = scene
    cfg = _cfg(iterations=60, checkpoint_every=20)
    full = StageTrainer(_views(scene, [0, 2, 4]), pts, cols, 2.0, cfg)
    saved = []

    def save(sd):  # through the project's checkpoint files (weights_only load)
        path = tmp_path / f"ckpt{len(saved)}.pt"
        atomic_torch_save(path, sd)
        saved.append(path)

    full.train(save_checkpoint=save, show_bar=False)
    resumed = StageTrainer(_views(scene, [0, 2, 4]), pts, cols, 2.0, cfg)
    resumed.load_state_dict(load_torch(saved[1]))  # the step-40 checkpoint
    assert resumed.step == 40
    resumed.train(show_bar=False)
    for k in full.params:
        torch.testing.assert_close(resumed.params[k], full.params[k], rtol=1e-5, atol=1e-6)


def test_presets():
    assert StageTrainConfig.preset("full").iterations == 15_000
    assert StageTrainConfig.preset("tiny").iterations < StageTrainConfig.preset("preview").iterations
    with pytest.raises(ValueError, match="unknown stage preset"):
        StageTrainConfig.preset("huge")
