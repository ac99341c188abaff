"""Spherical harmonics: 3DGS constants and signs, orthonormality, colour convention."""
import math

import pytest
import torch

from showmaker.splat.sh import eval_sh, num_sh_bases, rgb_to_sh, sh_bases, sh_degree_from_bases, sh_to_color, sh_to_rgb


def fibonacci_sphere(n: int) -> torch.Tensor:
    """n nearly uniform unit vectors [n, 3] (float64)."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (1 + 5 ** 0.5) * i
    r = torch.sqrt(1 - z * z)
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], -1)


def test_bases_are_orthonormal():
    d = fibonacci_sphere(20000)
    Y = sh_bases(3, d)  # [n, 16]
    gram = 4 * math.pi * Y.T @ Y / len(d)
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=2e-3, rtol=0)


def test_signs_and_values_follow_3dgs():
    """Spot values in the Sloan form gsplat's torch code uses (Y_1 = -0.4886 y, Y_6 = 0.9462 z^2 - 0.3154,
    Y_12 = z (1.8659 z^2 - 1.1195), ...), an expression of the same functions independent of ours."""
    d = torch.nn.functional.normalize(torch.tensor([[0.3, -0.5, 0.8], [-0.7, 0.2, 0.1]], dtype=torch.float64), dim=-1)
    x, y, z = d.unbind(-1)
    Y = sh_bases(3, d)
    torch.testing.assert_close(Y[:, 0], torch.full_like(x, 0.28209479177387814))
    torch.testing.assert_close(Y[:, 1:4], torch.stack([-0.48860251190292 * y, 0.48860251190292 * z,
                                                       -0.48860251190292 * x], -1))
    torch.testing.assert_close(Y[:, 6], 0.9461746957575601 * z * z - 0.3153915652525201)
    torch.testing.assert_close(Y[:, 7], -1.092548430592079 * z * x)
    torch.testing.assert_close(Y[:, 8], 0.5462742152960395 * (x * x - y * y))
    torch.testing.assert_close(Y[:, 12], z * (1.865881662950577 * z * z - 1.119528997770346))
    torch.testing.assert_close(Y[:, 13], (-2.285228997322329 * z * z + 0.4570457994644658) * x)
    torch.testing.assert_close(Y[:, 9], -0.5900435899266435 * (x * 2 * x * y + y * (x * x - y * y)))


def test_eval_normalises_directions_and_uses_only_the_degree_asked():
    g = torch.Generator().manual_seed(0)
    coeffs = torch.randn(5, 16, 3, generator=g)
    dirs = torch.randn(5, 3, generator=g)
    torch.testing.assert_close(eval_sh(3, dirs, coeffs), eval_sh(3, 7.5 * dirs, coeffs))
    torch.testing.assert_close(eval_sh(1, dirs, coeffs), eval_sh(1, dirs, coeffs[:, :4]))
    torch.testing.assert_close(eval_sh(0, dirs, coeffs), 0.28209479177387814 * coeffs[:, 0])
    with pytest.raises(ValueError, match="needs 9"):
        eval_sh(2, dirs, coeffs[:, :4])
    with pytest.raises(ValueError, match="degree"):
        sh_bases(4, dirs)


def test_colour_convention():
    rgb = torch.tensor([[0.2, 0.5, 0.9]])
    sh0 = rgb_to_sh(rgb)
    torch.testing.assert_close(sh_to_rgb(sh0), rgb)
    torch.testing.assert_close(sh_to_color(0, torch.tensor([[0.0, 0.0, 1.0]]), sh0[:, None]), rgb)
    assert sh_to_color(0, torch.tensor([[0.0, 0.0, 1.0]]), torch.full((1, 1, 3), -5.0)).eq(0).all()  # clamped at 0


def test_degree_bookkeeping():
    assert [num_sh_bases(d) for d in range(4)] == [1, 4, 9, 16]
    assert [sh_degree_from_bases(k) for k in (1, 4, 9, 16)] == [0, 1, 2, 3]
    for k in (2, 25):
        with pytest.raises(ValueError):
            sh_degree_from_bases(k)
