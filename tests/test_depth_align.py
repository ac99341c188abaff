"""Depth alignment (METHOD eq. 2-3): planted affine distortions with outliers are recovered."""
import numpy as np
import pytest

from showmaker.geometry import backproject_depth, fov_to_K, look_at_viewmat
from showmaker.stage.depth_align import DepthAlignConfig, align_depths, visible_points


def _scene(rng, n_frames=4, H=48, W=64):
    """Stage points on a box room seen by a few cameras, with the true depth maps."""
    K = fov_to_K(60, W, H)
    viewmats = [look_at_viewmat([rng.uniform(-1, 1), -3.0, 1.5], [0, 0, 1.0]) for _ in range(n_frames)]
    # True depth: a slanted wall plus a bump, so an affine fit is well conditioned.
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    depths = [4.0 + 0.02 * u + 0.01 * v + 0.5 * np.sin(u / 7.0) for _ in range(n_frames)]
    # Each frame sees the stage points lifted from its own depth map (its SfM track list).
    pts = [backproject_depth(d, K, vm)[1::3, 1::3].reshape(-1, 3) for d, vm in zip(depths, viewmats)]
    return K, viewmats, depths, pts


def test_planted_affine_with_outliers_recovered_within_1_percent():
    rng = np.random.default_rng(0)
    H, W = 48, 64
    K, viewmats, depths, pts = _scene(rng, H=H, W=W)
    a_true = np.array([0.5, 2.0, 1.3, 0.8])
    b_true = np.array([0.2, -1.0, 0.05, 0.7])
    # The monocular model sees D = (z - b) / a; 20% of the point depths are gross outliers.
    mono = [(d - b) / a for d, a, b in zip(depths, a_true, b_true)]
    obs = []
    for vm, p in zip(viewmats, pts):
        uv, z = visible_points(p, vm, K, W, H)
        out = rng.random(len(z)) < 0.2
        z = z.copy()
        z[out] += rng.uniform(-3, 3, out.sum())
        obs.append((uv, z))
    res = align_depths(mono, obs, scene_radius=5.0)
    assert res.valid.all()
    np.testing.assert_allclose(res.scale, a_true, rtol=0.01)
    np.testing.assert_allclose(res.shift, b_true, atol=0.01 * np.abs(depths[0]).mean())
    aligned = res.apply(mono[1], 1)
    assert np.abs(aligned - depths[1]).mean() < 0.01 * depths[1].mean()


def test_plain_least_squares_would_fail_on_those_outliers():
    """Guards the test above: the Huber fit matters (an L2 fit is off by more than 1%)."""
    rng = np.random.default_rng(0)
    K, viewmats, depths, pts = _scene(rng)
    uv, z = visible_points(pts[0], viewmats[0], K, 64, 48)
    z = z.copy()
    out = rng.random(len(z)) < 0.2
    z[out] += rng.uniform(0, 6, out.sum())  # one-sided outliers bias least squares
    mono = (depths[0] - 0.2) / 0.5
    huber = align_depths([mono], [(uv, z)], scene_radius=5.0)
    l2 = align_depths([mono], [(uv, z)], scene_radius=5.0, config=DepthAlignConfig(huber_c=1e6))
    assert abs(huber.scale[0] - 0.5) < 0.005
    assert abs(l2.scale[0] - 0.5) > 0.005


def test_rejections_are_reported():
    rng = np.random.default_rng(1)
    K, viewmats, depths, pts = _scene(rng, n_frames=3)
    obs = [visible_points(p, vm, K, 64, 48) for p, vm in zip(pts, viewmats)]
    obs[0] = (obs[0][0][:5], obs[0][1][:5])  # too few points
    mono = [depths[0], 1.0 / depths[1], depths[2]]  # frame 1 is disparity: negative scale
    res = align_depths(mono, obs, scene_radius=5.0)
    assert res.valid.tolist() == [False, False, True]
    assert "visible stage points" in res.rejected[0]
    assert "negative scale" in res.rejected[1] or "poor fit" in res.rejected[1]
    with pytest.raises(ValueError, match="frame 0"):
        res.apply(mono[0], 0)


def test_actor_pixels_are_excluded():
    rng = np.random.default_rng(2)
    K, viewmats, depths, pts = _scene(rng, n_frames=1)
    mask = np.zeros((48, 64), bool)
    mask[:, :32] = True
    uv, _ = visible_points(pts[0], viewmats[0], K, 64, 48, actor_mask=mask)
    assert len(uv) > 0 and (uv[:, 0] >= 32).all()


def test_metres_per_unit_is_median_inverse_scale():
    rng = np.random.default_rng(3)
    K, viewmats, depths, pts = _scene(rng, n_frames=3)
    # A metric model seeing a stage built at 1/4 scale: a = 0.25 -> 4 metres per unit.
    mono = [d / 0.25 for d in depths]
    obs = [visible_points(p, vm, K, 64, 48) for p, vm in zip(pts, viewmats)]
    res = align_depths(mono, obs, scene_radius=5.0)
    assert res.metres_per_unit() == pytest.approx(4.0, rel=1e-3)
