"""Camera conventions: OpenCV <-> Blender conversions, round trips and agreement with real Blender."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from showmaker.geometry import (
    BlenderLens,
    K_to_blender_lens,
    backproject_depth,
    blender_lens_to_K,
    blender_matrix_world_to_viewmat,
    fov_to_K,
    look_at_viewmat,
    project_points,
    viewmat_to_blender_matrix_world,
)


def _random_viewmat(rng):
    V = np.eye(4)
    V[:3, :3] = Rotation.random(random_state=int(rng.integers(1 << 30))).as_matrix()
    V[:3, 3] = rng.normal(0, 3, 3)
    return V


def test_viewmat_blender_round_trip():
    rng = np.random.default_rng(0)
    V = np.stack([_random_viewmat(rng) for _ in range(50)])
    M = viewmat_to_blender_matrix_world(V)
    np.testing.assert_allclose(blender_matrix_world_to_viewmat(M), V, atol=1e-6)
    # Blender's camera looks down its local -Z with +Y up: OpenCV's +z (forward) is Blender's -Z.
    np.testing.assert_allclose(M[:, :3, 2], -np.linalg.inv(V)[:, :3, 2], atol=1e-9)
    np.testing.assert_allclose(M[:, :3, 1], -np.linalg.inv(V)[:, :3, 1], atol=1e-9)


@pytest.mark.parametrize("size", [(320, 240), (240, 320), (97, 97)])
def test_K_blender_lens_round_trip(size):
    W, H = size
    K = fov_to_K(55.0, W, H)
    K[0, 2] += 11.25
    K[1, 2] -= 7.5
    lens = K_to_blender_lens(K, W, H)
    np.testing.assert_allclose(blender_lens_to_K(lens), K, atol=1e-6)
    assert isinstance(lens, BlenderLens) and lens.width == W and lens.height == H


def test_K_to_blender_lens_rejects_what_blender_cannot_show():
    K = np.array([[300.0, 0, 160], [0, 310.0, 120], [0, 0, 1]])
    with pytest.raises(ValueError, match="non-square"):
        K_to_blender_lens(K, 320, 240)
    K = np.array([[300.0, 2.0, 160], [0, 300.0, 120], [0, 0, 1]])
    with pytest.raises(ValueError, match="skew"):
        K_to_blender_lens(K, 320, 240)


def test_look_at_points_the_optical_axis_at_the_target():
    V = look_at_viewmat([1.0, -3.0, 1.5], [0.2, 0.5, 0.8])
    K = fov_to_K(60, 320, 240)
    uv, z = project_points(np.array([[0.2, 0.5, 0.8], [0.2, 0.5, 1.8]]), V, K)
    np.testing.assert_allclose(uv[0], [160, 120], atol=1e-9)
    assert uv[1, 1] < 120  # higher in the world is higher in the image (smaller v)
    assert z[0] > 0


def test_backproject_inverts_project():
    rng = np.random.default_rng(1)
    V, K = look_at_viewmat([0.5, -3, 1.2], [0, 0, 1]), fov_to_K(50, 40, 30)
    depth = rng.uniform(1, 5, (30, 40))
    pts = backproject_depth(depth, K, V)
    uv, z = project_points(pts.reshape(-1, 3), V, K)
    u, v = np.meshgrid(np.arange(40) + 0.5, np.arange(30) + 0.5)
    np.testing.assert_allclose(uv, np.stack([u, v], -1).reshape(-1, 2), atol=1e-9)
    np.testing.assert_allclose(z, depth.ravel(), atol=1e-9)


@pytest.mark.blender
@pytest.mark.parametrize("size,shift", [((320, 240), (13.0, -9.0)), ((180, 240), (-7.5, 21.0))])
def test_projection_matches_real_blender(size, shift):
    """A camera set up from our K and viewmat projects points where Blender itself says they land,
    off-centre principal point (lens shift) and portrait images included."""
    bpy = pytest.importorskip("bpy")
    import mathutils
    from bpy_extras.object_utils import world_to_camera_view

    W, H = size
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = W, H, 100
    K = fov_to_K(58.0, W, H)
    K[0, 2] += shift[0]
    K[1, 2] += shift[1]
    V = look_at_viewmat([1.5, -3.0, 1.6], [0.1, 0.3, 0.7])
    cam = bpy.data.cameras.new("cam")
    lens = K_to_blender_lens(K, W, H)
    cam.sensor_fit, cam.sensor_width, cam.lens = "HORIZONTAL", lens.sensor_width_mm, lens.lens_mm
    cam.shift_x, cam.shift_y = lens.shift_x, lens.shift_y
    ob = bpy.data.objects.new("cam", cam)
    scene.collection.objects.link(ob)
    scene.camera = ob
    ob.matrix_world = mathutils.Matrix(viewmat_to_blender_matrix_world(V).tolist())
    bpy.context.view_layer.update()

    rng = np.random.default_rng(2)
    pts = rng.uniform([-1.5, -0.5, 0.0], [1.5, 2.0, 2.0], (40, 3))
    uv, z = project_points(pts, V, K)
    ndc = np.array([tuple(world_to_camera_view(scene, ob, mathutils.Vector(p))) for p in pts])
    # Blender: x right in [0, 1], y up in [0, 1] over the image, z the camera-space depth.
    blender_uv = np.stack([ndc[:, 0] * W, (1.0 - ndc[:, 1]) * H], -1)
    np.testing.assert_allclose(uv, blender_uv, atol=1e-3)
    np.testing.assert_allclose(z, ndc[:, 2], atol=1e-5)
    np.testing.assert_allclose(blender_matrix_world_to_viewmat(np.array(ob.matrix_world)), V, atol=1e-6)
