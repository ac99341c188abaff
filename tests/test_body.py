"""showmaker.body: the procedural SMPL-format body, loading through smplx, LBS helpers, errors."""
from __future__ import annotations

import math
import os
import pickle
import sys

import numpy as np
import pytest
import torch
import trimesh

from showmaker.body import (
    SMPL_JOINT_NAMES,
    SMPL_PARENTS,
    BodyModelError,
    BodyPart,
    axis_angle_to_matrix,
    forward_kinematics,
    joint_index,
    linear_blend_skinning,
    linear_blend_skinning_with_rotations,
    load_body_model,
    matrix_to_axis_angle,
)
from showmaker.body import procedural
from showmaker.body.anatomy import skeleton
from showmaker.body import convert_smpl
from showmaker.body.model import read_model_file



@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """These tensors are small: on shared, busy cores, torch's thread pool waits far longer than it works."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    """A private SHOWMAKER_CACHE (and no SHOWMAKER_SMPL_DIR) for this module."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHOWMAKER_CACHE", str(root))
        mp.delenv("SHOWMAKER_SMPL_DIR", raising=False)
        yield root


@pytest.fixture(scope="module")
def body(cache_root):
    return load_body_model()


@pytest.fixture(scope="module")
def arrays(body):
    with np.load(body.source) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOWMAKER_CACHE", str(tmp_path))
    return tmp_path / "body"


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-6) -> None:
    np.testing.assert_allclose(actual.detach().numpy(), expected.detach().numpy(), atol=atol, rtol=0)


def _pose(**joints) -> torch.Tensor:
    pose = torch.zeros(1, 24, 3)
    for name, aa in joints.items():
        pose[0, joint_index(name)] = torch.tensor(aa, dtype=torch.float32)
    return pose


def _random_pose_betas(batch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 24, 3, generator=g) * 0.5, torch.randn(batch, 10, generator=g)


# --- skeleton -----------------------------------------------------------------------------------


def test_skeleton_names_and_tree():
    assert len(SMPL_JOINT_NAMES) == 24 and SMPL_JOINT_NAMES[0] == "pelvis" and SMPL_JOINT_NAMES[23] == "right_hand"
    assert SMPL_PARENTS.tolist() == [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
    assert SMPL_JOINT_NAMES[SMPL_PARENTS[joint_index("left_elbow")]] == "left_shoulder"
    with pytest.raises(KeyError, match="left_elbow"):
        joint_index("elbow_left")


# --- the procedural model -----------------------------------------------------------------------


def test_model_file_has_smpl_keys_and_shapes(body, arrays):
    v = body.num_vertices
    assert 3000 <= v <= 7000
    assert arrays["v_template"].shape == (v, 3)
    assert arrays["shapedirs"].shape == (v, 3, 10)
    assert arrays["posedirs"].shape == (v, 3, 207) and not arrays["posedirs"].any()
    assert arrays["J_regressor"].shape == (24, v)
    assert arrays["weights"].shape == (v, 24)
    assert arrays["kintree_table"].tolist() == [SMPL_PARENTS.tolist(), list(range(24))]
    assert body.faces.dtype == np.int64 and body.faces.shape[1] == 3
    assert body.part_labels.shape == (v,) and body.weights.shape == (v, 24)
    assert int(arrays["version"]) == procedural.GENERATOR_VERSION


def test_zero_pose_joints_are_the_regressed_rest_joints(body, arrays):
    out = body(torch.zeros(1, 24, 3))
    regressed = arrays["J_regressor"] @ arrays["v_template"]
    np.testing.assert_allclose(out.joints[0].numpy(), regressed, atol=1e-6)
    np.testing.assert_allclose(out.vertices[0].numpy(), arrays["v_template"], atol=1e-6)
    # The regressor reproduces the designed skeleton exactly, pelvis at the origin.
    designed = skeleton(np.zeros(10))
    np.testing.assert_allclose(regressed, np.stack([designed[n] for n in SMPL_JOINT_NAMES]), atol=1e-9)
    np.testing.assert_allclose(regressed[0], 0.0, atol=1e-9)


def test_regressor_and_weights_are_smooth_partitions_of_unity(body, arrays):
    for key in ("J_regressor", "weights"):
        assert arrays[key].min() >= 0
        np.testing.assert_allclose(arrays[key].sum(axis=1), 1.0, atol=1e-9)
    # Vertices around the left elbow blend the shoulder and elbow joints.
    w, v = arrays["weights"], arrays["v_template"]
    elbow = skeleton(np.zeros(10))["left_elbow"]
    near = np.linalg.norm(v - elbow, axis=1) < 0.06
    blend = w[near][:, [joint_index("left_shoulder"), joint_index("left_elbow")]]
    assert ((blend > 0.1).all(axis=1)).sum() >= 10
    # ... while away from joints one joint has all the weight: mid-forearm follows the elbow joint alone.
    wrist = skeleton(np.zeros(10))["left_wrist"]
    mid_forearm = (v[:, 0] > elbow[0] + 0.08) & (v[:, 0] < wrist[0] - 0.08) & (body.part_labels == BodyPart.FOREARM)
    assert mid_forearm.sum() >= 16 and (w[mid_forearm, joint_index("left_elbow")] == 1).all()


def test_mesh_is_human_shaped(body, arrays):
    v, labels = arrays["v_template"], body.part_labels
    height = v[:, 1].max() - v[:, 1].min()
    assert 1.5 < height < 1.9
    top = np.argsort(v[:, 1])[-20:]
    assert np.isin(labels[top], [BodyPart.HEAD, BodyPart.HAIR]).all()
    hands = labels == BodyPart.HAND
    assert (v[hands & (v[:, 0] > 0), 0] > 0.6).all() and (v[hands & (v[:, 0] < 0), 0] < -0.6).all()
    assert v[:, 0].max() == pytest.approx(-v[:, 0].min())  # mirror-symmetric
    # Faces +z: the nose is the front-most head point, toes are ahead of heels, eyes and mouth in front.
    names = list(arrays["extra_joint_names"])
    ids = dict(zip(names, arrays["extra_joint_vertices"]))
    head = np.isin(labels, [BodyPart.HEAD, BodyPart.HAIR, BodyPart.EYE, BodyPart.MOUTH])
    assert v[ids["nose"], 2] == v[head, 2].max()
    assert v[ids["LBigToe"], 2] > v[ids["LHeel"], 2] + 0.2
    assert v[ids["leye"], 0] > 0 > v[ids["reye"], 0]
    assert (v[np.isin(labels, [BodyPart.EYE, BodyPart.MOUTH]), 2] > 0.05).all()
    assert set(np.unique(labels)) == set(BodyPart)
    assert [str(s) for s in arrays["part_names"]] == [p.name.lower() for p in BodyPart]


def test_mesh_is_a_union_of_closed_outward_parts(body, arrays):
    mesh = trimesh.Trimesh(arrays["v_template"], body.faces, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    pieces = mesh.split(only_watertight=False)
    assert len(pieces) == 13  # torso, neck, head, and arm, hand, thumb, leg, foot per side
    assert all(p.is_volume and p.volume > 0 for p in pieces)


def test_extra_joints_come_from_our_vertices(body):
    out = body._smpl(
        betas=torch.zeros(1, 10), global_orient=torch.zeros(1, 3), body_pose=torch.zeros(1, 69)
    )  # smplx appends 21 vertex joints to the 24
    assert out.joints.shape == (1, 45, 3)
    assert body(torch.zeros(1, 24, 3)).joints.shape == (1, 24, 3)


def test_shape_directions_do_what_they_say(body):
    rest = body.rest_vertices(torch.zeros(1, 10))[0]
    joints = body.rest_joints(torch.zeros(1, 10))[0]

    def with_beta(k, value):
        betas = torch.zeros(1, 10)
        betas[0, k] = value
        return body.rest_vertices(betas)[0], body.rest_joints(betas)[0]

    tall, _ = with_beta(0, 2.0)
    height = lambda v: float(v[:, 1].max() - v[:, 1].min())  # noqa: E731
    assert height(tall) == pytest.approx(height(rest) * 1.08, rel=1e-3)
    long_legs, j = with_beta(3, 2.0)
    ankle, head = joint_index("left_ankle"), joint_index("head")
    assert float(j[ankle, 1] - joints[ankle, 1]) < -0.07 and torch.allclose(j[head], joints[head], atol=1e-6)
    wide, j = with_beta(2, 2.0)
    shoulder = joint_index("left_shoulder")
    assert float(j[shoulder, 0] - joints[shoulder, 0]) == pytest.approx(0.03, abs=0.005)
    heavy, _ = with_beta(1, 2.0)
    waist = (rest[:, 1] - 0.12).abs() < 0.02
    assert float(heavy[waist, 2].max()) > float(rest[waist, 2].max()) + 0.015
    # Regressed joints follow each shape's designed skeleton.
    for k in range(10):
        beta = np.zeros(10)
        beta[k] = 1.0
        designed = np.stack([skeleton(beta)[n] for n in SMPL_JOINT_NAMES])
        np.testing.assert_allclose(with_beta(k, 1.0)[1].numpy(), designed, atol=0.01)


def test_bending_the_left_elbow_moves_only_the_left_forearm_and_hand(body):
    rest = body(torch.zeros(1, 24, 3))
    bent = body(_pose(left_elbow=(0.0, -math.pi / 2, 0.0)))  # forearm swings forward, to +z
    v0, v1 = rest.vertices[0].numpy(), bent.vertices[0].numpy()
    moved = np.linalg.norm(v1 - v0, axis=1)
    labels, left = body.part_labels, v0[:, 0] > 0
    elbow, wrist = (rest.joints[0, joint_index(n)].numpy() for n in ("left_elbow", "left_wrist"))
    np.testing.assert_allclose(
        bent.joints[0, joint_index("left_wrist")].numpy(), elbow + [0, 0, np.linalg.norm(wrist - elbow)], atol=1e-5
    )
    far = left & np.isin(labels, [BodyPart.FOREARM, BodyPart.HAND]) & (v0[:, 0] > elbow[0] + 0.05)
    assert moved[far].min() > 0.04
    still = ~left & np.isin(labels, [BodyPart.UPPER_ARM, BodyPart.FOREARM, BodyPart.HAND])
    still |= np.isin(labels, [BodyPart.THIGH, BodyPart.SHIN, BodyPart.FOOT, BodyPart.HEAD, BodyPart.HAIR])
    still |= left & (v0[:, 0] < elbow[0] - 0.08)
    assert moved[still].max() < 1e-6


def test_our_lbs_matches_smplx(body):
    pose, betas = _random_pose_betas(4)
    out = body(pose, betas)
    joints, transforms = forward_kinematics(axis_angle_to_matrix(pose), body.rest_joints(betas), body.parents)
    vertices = linear_blend_skinning(body.rest_vertices(betas), body.weights, transforms)
    _assert_close(joints, out.joints, atol=1e-5)
    _assert_close(vertices, out.vertices, atol=1e-5)
    # Unbatched points skin the same.
    rest = body.rest_vertices(betas[:1])[0]
    unbatched = linear_blend_skinning(rest, body.weights, transforms[:1])
    _assert_close(unbatched, out.vertices[:1], atol=1e-5)


def test_skinned_rotations_are_rotations(body):
    pose, betas = _random_pose_betas(2, seed=1)
    _, transforms = forward_kinematics(axis_angle_to_matrix(pose), body.rest_joints(betas), body.parents)
    points, rotations = linear_blend_skinning_with_rotations(body.rest_vertices(betas), body.weights, transforms)
    _assert_close(points, body(pose, betas).vertices, atol=1e-5)
    eye = torch.eye(3).expand_as(rotations)
    _assert_close(rotations @ rotations.transpose(-1, -2), eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(rotations), torch.ones(()), atol=1e-5)
    rigid = body.part_labels == BodyPart.HAIR  # the head is skinned to the head joint alone
    head = transforms[:, joint_index("head"), :3, :3]
    expected = head[:, None].expand(-1, int(rigid.sum()), -1, -1)
    _assert_close(rotations[:, rigid], expected, atol=1e-5)
    # Wild poses twist some blends through ~180 degrees: still proper rotations, finite gradients.
    wild = (torch.randn(2, 24, 3, generator=torch.Generator().manual_seed(9)) * 2).requires_grad_()
    _, transforms = forward_kinematics(axis_angle_to_matrix(wild), body.rest_joints(), body.parents)
    _, rotations = linear_blend_skinning_with_rotations(body.rest_vertices()[0], body.weights, transforms)
    assert torch.allclose(torch.linalg.det(rotations), torch.ones(()), atol=1e-4)
    rotations.sum().backward()
    assert torch.isfinite(wild.grad).all()


def test_scale_and_transl_place_the_body_in_the_stage(body):
    pose, betas = _random_pose_betas(3, seed=2)
    scale, transl = torch.tensor([0.5, 1.0, 2.0]), torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [-4.0, 0.5, 0.0]])
    plain, placed = body(pose, betas), body(pose, betas, scale=scale, transl=transl)
    for a, b in ((plain.vertices, placed.vertices), (plain.joints, placed.joints)):
        _assert_close(b, scale[:, None, None] * a + transl[:, None], atol=1e-5)
    # The root joint stays at its rest position under any global orientation, before placement.
    turned = body(_pose(pelvis=(0.3, 1.2, -0.4)))
    _assert_close(turned.joints[0, 0], body.rest_joints()[0, 0], atol=1e-6)
    with pytest.raises(ValueError, match=r"scale must be a tensor of shape \[3\]"):
        body(pose, betas, scale=scale[:, None])
    with pytest.raises(ValueError, match=r"pose must be a tensor of shape \[B, 24, 3\]"):
        body(pose.reshape(3, 72))
    with pytest.raises(ValueError, match="betas has batch 2"):
        body(pose, betas[:2])


def test_forward_is_differentiable(body):
    pose = torch.zeros(2, 24, 3, requires_grad=True)
    betas = torch.zeros(2, 10, requires_grad=True)
    body(pose, betas).vertices.square().sum().backward()
    assert torch.isfinite(pose.grad).all() and betas.grad.abs().sum() > 0


# --- rotations ----------------------------------------------------------------------------------


def test_axis_angle_round_trip_and_stability():
    g = torch.Generator().manual_seed(3)
    aa = torch.randn(500, 3, generator=g, dtype=torch.float64)
    aa = aa / aa.norm(dim=-1, keepdim=True) * torch.rand(500, 1, generator=g, dtype=torch.float64) * math.pi
    edge_cases = torch.tensor([[0.0, 0, 0], [1e-9, 0, 0], [0, 0, math.pi - 1e-7], [0, 1e-4, 0]], dtype=torch.float64)
    aa = torch.cat([aa, edge_cases])
    rot = axis_angle_to_matrix(aa)
    _assert_close(rot @ rot.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand_as(rot))
    _assert_close(matrix_to_axis_angle(rot), aa, atol=1e-6)
    zero = torch.zeros(2, 3, requires_grad=True)
    axis_angle_to_matrix(zero)[..., 0, 1].sum().backward()
    assert torch.isfinite(zero.grad).all()
    _assert_close(zero.grad, torch.tensor([[0.0, 0.0, -1.0]] * 2))  # dR01/dz = -1 at zero


def test_forward_kinematics_chains_parent_rotations():
    designed = skeleton(np.zeros(10))
    rest = torch.from_numpy(np.stack([designed[n] for n in SMPL_JOINT_NAMES]))[None]
    aa = torch.zeros(1, 24, 3, dtype=torch.float64)
    aa[0, joint_index("left_shoulder"), 2] = math.pi / 2  # left arm swung up, about +z
    aa[0, joint_index("left_elbow"), 1] = -math.pi / 2  # forearm bent forward, in the arm's frame
    joints, transforms = forward_kinematics(axis_angle_to_matrix(aa), rest, SMPL_PARENTS)
    sh, el, wr = (joint_index(n) for n in ("left_shoulder", "left_elbow", "left_wrist"))
    quarter_z = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64)
    quarter_y = torch.tensor([[0.0, 0, -1], [0, 1, 0], [1, 0, 0]], dtype=torch.float64)
    _assert_close(joints[0, el], rest[0, sh] + quarter_z @ (rest[0, el] - rest[0, sh]))
    # The child's rotation acts in its parent's rotated frame: global = R_shoulder @ R_elbow.
    _assert_close(joints[0, wr], joints[0, el] + quarter_z @ quarter_y @ (rest[0, wr] - rest[0, el]))
    point = torch.cat([rest[0, wr], torch.ones(1, dtype=torch.float64)])
    _assert_close((transforms[0, el] @ point)[:3], joints[0, wr])


# --- generation and cache -----------------------------------------------------------------------


def test_generation_is_deterministic(arrays):
    again = procedural.generate()
    assert sorted(again) == sorted(arrays)
    for key, value in again.items():
        np.testing.assert_array_equal(value, arrays[key], err_msg=key)


def test_cache_is_written_atomically_and_reused(fresh_cache, arrays, monkeypatch):
    monkeypatch.setattr(procedural, "generate", lambda: arrays)  # the cache mechanics, not the geometry

    def crash(src, dst):
        raise OSError("simulated crash before the rename")

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", crash)
        with pytest.raises(OSError, match="simulated crash"):
            procedural.ensure_procedural_model()
    assert list(fresh_cache.iterdir()) == []  # neither a partial model nor a temp file is left
    path = procedural.ensure_procedural_model()
    assert path.parent == fresh_cache and path.name == f"showmaker_body_v{procedural.GENERATOR_VERSION}.npz"
    monkeypatch.setattr(procedural, "generate", lambda: pytest.fail("regenerated an up-to-date cache"))
    assert procedural.ensure_procedural_model() == path


def test_unwritable_cache_says_how_to_fix_it(tmp_path, arrays, monkeypatch):
    monkeypatch.setattr(procedural, "generate", lambda: arrays)
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("SHOWMAKER_CACHE", str(tmp_path / "a_file"))
    with pytest.raises(OSError, match="cannot write the procedural body model.*SHOWMAKER_CACHE"):
        load_body_model()


def test_cache_regenerates_for_a_new_version_or_a_bad_file(fresh_cache, arrays, monkeypatch):
    monkeypatch.setattr(procedural, "generate", lambda: dict(arrays, version=np.array(procedural.GENERATOR_VERSION)))
    old = procedural.ensure_procedural_model()
    monkeypatch.setattr(procedural, "GENERATOR_VERSION", procedural.GENERATOR_VERSION + 1)
    new = procedural.ensure_procedural_model()
    assert new != old and old.exists()
    with np.load(new) as data:
        assert int(data["version"]) == procedural.GENERATOR_VERSION
    new.write_bytes(b"truncated")
    assert load_body_model().num_vertices > 0  # unreadable cache: rebuilt on load
    with np.load(new) as data:
        assert int(data["version"]) == procedural.GENERATOR_VERSION
    _write_npz(new, arrays, version=np.array(0))  # readable, but made by another generator version
    procedural.ensure_procedural_model()
    with np.load(new) as data:
        assert int(data["version"]) == procedural.GENERATOR_VERSION


# --- loading real SMPL files and their errors ---------------------------------------------------


def _write_npz(path, arrays, drop=(), **changes):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in arrays.items() if k not in drop}
    data.update(changes)
    np.savez(path, **data)
    return path


def test_smpl_dir_loads_npz_and_plain_pickle_through_smplx(tmp_path, arrays, body, monkeypatch):
    _write_npz(tmp_path / "npz" / "SMPL_NEUTRAL.npz", arrays)
    pose, betas = _random_pose_betas(2, seed=4)
    expected = body(pose, betas).vertices
    loaded = load_body_model(tmp_path / "npz")
    assert loaded.source.name == "SMPL_NEUTRAL.npz"
    _assert_close(loaded(pose, betas).vertices, expected)
    # The official file name, any letter case, in an smplx-style smpl/ subfolder, found via the env var.
    pkl = tmp_path / "pkl" / "smpl" / "basicModel_m_lbs_10_207_0_v1.1.0.pkl"
    pkl.parent.mkdir(parents=True)
    pkl.write_bytes(pickle.dumps({k: arrays[k] for k in arrays}, protocol=2))
    monkeypatch.setenv("SHOWMAKER_SMPL_DIR", str(tmp_path / "pkl"))
    loaded = load_body_model(gender="male")
    assert loaded.source == pkl
    _assert_close(loaded(pose, betas).vertices, expected)


def test_smpl_sized_model_uses_smplx_vertex_ids(tmp_path, arrays):
    pad = 6890 - len(arrays["v_template"])
    padded = {
        "v_template": np.concatenate([arrays["v_template"], np.zeros((pad, 3))]),
        "shapedirs": np.concatenate([arrays["shapedirs"], np.zeros((pad, 3, 10))]),
        "posedirs": np.zeros((6890, 3, 207)),
        "J_regressor": np.concatenate([arrays["J_regressor"], np.zeros((24, pad))], axis=1),
        "weights": np.concatenate([arrays["weights"], np.tile(np.eye(24)[:1], (pad, 1))]),
    }
    drop = ("extra_joint_names", "extra_joint_vertices")
    model = load_body_model(_write_npz(tmp_path / "SMPL_NEUTRAL.npz", arrays, drop=drop, **padded))
    assert model.num_vertices == 6890
    assert model(torch.zeros(2, 24, 3)).joints.shape == (2, 24, 3)


def test_missing_smpl_dir_says_where_files_go(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOWMAKER_SMPL_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(BodyModelError, match="does not exist") as err:
        load_body_model()
    for text in (str(tmp_path / "nowhere"), "SHOWMAKER_SMPL_DIR", "SMPL_NEUTRAL.npz", "smpl.is.tue.mpg.de"):
        assert text in str(err.value)


def test_smpl_dir_without_the_file_lists_what_it_looked_for(tmp_path):
    (tmp_path / "readme.txt").write_text("not a model")
    with pytest.raises(BodyModelError, match="no female SMPL model") as err:
        load_body_model(tmp_path, gender="female")
    for text in ("SMPL_FEMALE.npz", "basicmodel_f_lbs_10_207_0_v1.1.0.pkl", "readme.txt", "SHOWMAKER_SMPL_DIR"):
        assert text in str(err.value)


@pytest.mark.parametrize(
    ("drop", "changes", "message"),
    [
        (("weights",), {}, "missing key.*weights"),
        ((), {"J_regressor": np.zeros((23, 10))}, r"'J_regressor' has shape \[23, 10\], expected \[24, V\]"),
        ((), {"posedirs": np.zeros((5, 3, 207))}, r"'posedirs' has shape \[5, 3, 207\], expected \[V, 3, 207\]"),
        ((), {"v_template": np.zeros((10,))}, r"'v_template' has shape \[10\], expected \[V, 3\]"),
        ((), {"kintree_table": np.zeros((2, 24), dtype=np.int64)}, "not SMPL's kinematic tree"),
        ((), {"f": np.array([[0, 1, 10**6]])}, "'f' indexes vertices outside"),
        (("extra_joint_vertices",), {}, "needs keys 'extra_joint_names'"),
    ],
)
def test_malformed_model_files_name_the_key(tmp_path, arrays, drop, changes, message):
    _write_npz(tmp_path / "SMPL_NEUTRAL.npz", arrays, drop=drop, **changes)
    with pytest.raises(BodyModelError, match=message):
        load_body_model(tmp_path)


def test_unreadable_files_and_bad_arguments(tmp_path):
    (tmp_path / "SMPL_NEUTRAL.npz").write_bytes(b"not a zip")
    with pytest.raises(BodyModelError, match="cannot read it as an .npz"):
        load_body_model(tmp_path)
    with pytest.raises(BodyModelError, match="unknown model format '.txt'"):
        load_body_model(tmp_path / "x.txt") if (tmp_path / "x.txt").write_text("") is not None else None
    with pytest.raises(BodyModelError, match="gender must be one of neutral, male, female"):
        load_body_model(gender="other")


def test_chumpy_pickle_error_and_chumpy_free_conversion(tmp_path, arrays, body, monkeypatch):
    # Fake a chumpy package just long enough to pickle an SMPL file the way the official ones are.
    fake = tmp_path / "fake_site" / "chumpy"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "ch.py").write_text("class Ch:\n    def __init__(self, x):\n        self.x = x\n")
    monkeypatch.syspath_prepend(str(fake.parent))
    from chumpy.ch import Ch  # noqa: PLC0415  (the fake above)

    data = dict(arrays)
    data["shapedirs"] = Ch(arrays["shapedirs"])
    src = tmp_path / "smpl" / "basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl"
    src.parent.mkdir()
    src.write_bytes(pickle.dumps(data, protocol=2))
    sys.path.remove(str(fake.parent))  # chumpy is gone again (monkeypatch restores sys.path afterwards)
    for name in [m for m in sys.modules if m == "chumpy" or m.startswith("chumpy.")]:
        del sys.modules[name]

    with pytest.raises(BodyModelError, match="chumpy") as err:
        load_body_model(src.parent)
    assert "python -m showmaker.body.convert_smpl" in str(err.value) and str(src) in str(err.value)

    convert_smpl.main([str(src), str(src.with_suffix(".npz"))])  # no chumpy needed; the .npz now wins the lookup
    converted = load_body_model(src.parent)
    assert converted.source == src.with_suffix(".npz")
    pose, betas = _random_pose_betas(1, seed=5)
    _assert_close(converted(pose, betas).vertices, body(pose, betas).vertices)


@pytest.mark.skipif(not os.environ.get("SHOWMAKER_SMPL_DIR"), reason="set SHOWMAKER_SMPL_DIR to test real SMPL files")
def test_real_smpl_files_load():
    model = load_body_model(os.environ["SHOWMAKER_SMPL_DIR"])
    assert model.num_vertices == 6890 and model.part_labels is None
    out = model(torch.zeros(1, 24, 3))
    assert out.joints.shape == (1, 24, 3)
    height = float(out.vertices[0, :, 1].max() - out.vertices[0, :, 1].min())
    assert 1.4 < height < 2.0
    _assert_close(out.joints, model.rest_joints(), atol=1e-6)


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    """SMPL .pkl files are unpickled with an allow-list: a crafted file cannot call arbitrary functions."""

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "SMPL_NEUTRAL.pkl"
    path.write_bytes(pickle.dumps({"v_template": Exploit()}, protocol=2))
    with pytest.raises(BodyModelError, match="refusing to load"):
        read_model_file(path)
