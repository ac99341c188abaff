"""Levelling: the floor found in noisy stage points becomes z = 0 with Z up."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from showmaker.geometry import look_at_viewmat
from showmaker.stage.level import LevelConfig, apply_level, find_floor


def _room(rng):
    floor = np.c_[rng.uniform(-3, 3, (3000, 2)), rng.normal(0, 0.005, 3000)]
    table = np.c_[rng.uniform(-0.5, 0.5, (800, 2)), 0.75 + rng.normal(0, 0.005, 800)]
    wall = np.c_[rng.uniform(-3, 3, 1500), np.full(1500, 3.0), rng.uniform(0, 2.5, 1500)]
    clutter = rng.uniform(-3, 3, (500, 3))
    pts = np.concatenate([floor, table, wall, clutter])
    cams = np.stack([look_at_viewmat([x, -2.5, 1.6], [0, 0, 0.8]) for x in (-1, 0, 1.5)])
    return pts, cams


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_floor_recovered_under_random_similarity(seed):
    rng = np.random.default_rng(seed)
    pts, cams = _room(rng)
    T = np.eye(4)
    T[:3, :3] = Rotation.random(random_state=seed).as_matrix()
    T[:3, 3] = rng.normal(0, 5, 3)
    pts_w = pts @ T[:3, :3].T + T[:3, 3]
    cams_w = cams @ np.linalg.inv(T)

    floor = find_floor(pts_w, cams_w, scene_radius=3.0)
    lev_pts, lev_cams = apply_level(floor.T_level, pts_w, cams_w)
    np.testing.assert_allclose(np.linalg.det(floor.T_level[:3, :3]), 1.0, atol=1e-9)
    # The original floor points land on z = 0, the table top at +0.75, cameras above.
    assert np.abs(lev_pts[:3000, 2]).max() < 0.03
    assert np.median(lev_pts[3000:3800, 2]) == pytest.approx(0.75, abs=0.01)
    centers = -np.einsum("cji,cj->ci", lev_cams[:, :3, :3], lev_cams[:, :3, 3])
    np.testing.assert_allclose(centers[:, 2], 1.6, atol=0.02)
    # Levelling moves cameras and points together: reprojections are unchanged.
    p = np.r_[pts_w[0], 1.0]
    np.testing.assert_allclose(cams_w[0] @ p, lev_cams[0] @ np.r_[lev_pts[0], 1.0], atol=1e-9)


def test_no_floor_is_a_clear_error():
    rng = np.random.default_rng(0)
    wall = np.c_[rng.uniform(-3, 3, 500), np.full(500, 3.0), rng.uniform(0, 2.5, 500)]
    cams = np.stack([look_at_viewmat([0, -2.5, 1.6], [0, 0, 0.8])])
    with pytest.raises(ValueError, match="no level plane"):
        find_floor(wall, cams, scene_radius=3.0, config=LevelConfig(iterations=300))


def test_a_larger_table_top_does_not_win_over_the_floor():
    rng = np.random.default_rng(5)
    pts, cams = _room(rng)
    big_table = np.c_[rng.uniform(-1.5, 1.5, (4000, 2)), 0.75 + rng.normal(0, 0.005, 4000)]
    floor = find_floor(np.concatenate([pts, big_table]), cams, scene_radius=3.0)
    np.testing.assert_allclose(floor.normal, [0, 0, 1], atol=0.01)
    assert abs(floor.offset) < 0.01
