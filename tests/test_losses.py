"""Stage losses (METHOD eq. 5-7): masks respected, known values, gradients flow."""
import math

import torch

from showmaker.splat.losses import depth_log_l1, depth_tv, l1_loss, photometric_loss, psnr, ssim


def test_ssim_identity_and_noise():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 32, 40, 3, generator=g)
    assert torch.isclose(ssim(img, img), torch.tensor(1.0), atol=1e-5)
    noisy = (img + 0.2 * torch.randn(img.shape, generator=g)).clamp(0, 1)
    assert ssim(noisy, img) < 0.9


def test_masked_terms_ignore_masked_pixels():
    a = torch.zeros(1, 8, 8, 3)
    b = torch.zeros(1, 8, 8, 3)
    b[:, :, :4] = 1.0  # differs only on the left half
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[:, :, 4:] = True
    assert l1_loss(a, b, mask) == 0
    assert l1_loss(a, b) == 0.5
    assert photometric_loss(a, b, mask) < 1e-6
    empty = torch.zeros_like(mask)
    assert l1_loss(a, b, empty) == 0  # empty mask: no NaN


def test_depth_log_l1_value_and_invalid_targets():
    pred = torch.full((1, 4, 4), 2.0, requires_grad=True)
    target = torch.full((1, 4, 4), 3.0)
    target[0, 0, 0] = float("nan")
    target[0, 0, 1] = 0.0
    loss = depth_log_l1(pred, target)
    assert math.isclose(loss.item(), math.log(2.0), rel_tol=1e-6)
    loss.backward()
    assert pred.grad[0, 0, 0] == 0 and pred.grad[0, 0, 1] == 0 and pred.grad[0, 2, 2] < 0


def test_depth_tv_zero_on_constant_and_positive_on_edges():
    flat = torch.ones(1, 6, 6)
    assert depth_tv(flat) == 0
    step = flat.clone()
    step[:, :, 3:] = 2.0
    assert depth_tv(step) > 0


def test_psnr():
    a = torch.zeros(1, 4, 4, 3)
    b = torch.full((1, 4, 4, 3), 0.1)
    assert math.isclose(float(psnr(a, b)), 20.0, rel_tol=1e-5)
