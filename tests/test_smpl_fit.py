"""SMPL initialisation by optimisation: recover known poses from synthetic keypoints.

Ground truth: the project's body model posed with known parameters (realistic 30 fps motion), its joints
and named surface vertices projected with a K and written into mediapipe's 33-landmark layout (landmarks
without a body counterpart get random positions and low confidence), plus 2 px pixel noise; world
landmarks are the hip-centred camera-frame landmarks with 2 cm noise.
"""
import time

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from showmaker.body import load_body_model
from showmaker.estimate.smpl_fit import (
    MEDIAPIPE_LANDMARKS,
    MEDIAPIPE_TO_SMPL,
    BodyKeypoints,
    SmplFitConfig,
    _extra_vertex_ids,
    fit_smpl,
    mpjpe_root_aligned,
)

W, H = 640, 480
K = np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]])


@pytest.fixture(scope="module")
def body():
    return load_body_model()


def _gt_pose(rng, F, phase, yaw):
    """A walking-like motion at 30 fps: arms down and swinging, hips/knees/elbows flexing, a turning body."""
    pose = np.zeros((F, 24, 3))
    for f in range(F):
        t = 2 * np.pi * f / 30.0 + phase
        p = pose[f]
        p[16], p[17] = [0, 0, -1.2], [0, 0, 1.2]  # arms down
        p[1, 0], p[2, 0] = 0.4 * np.sin(t), -0.4 * np.sin(t)
        p[4, 0], p[5, 0] = 0.3 + 0.3 * np.sin(t), 0.3 + 0.3 * np.cos(t)  # knees flex about +x
        p[16, 0], p[17, 0] = 0.5 * np.sin(t), -0.5 * np.sin(t)
        p[18, 1] = -0.3 - 0.6 * (0.5 + 0.5 * np.sin(t + 1))  # left elbow flexes about -y
        p[19, 1] = 0.3 + 0.6 * (0.5 + 0.5 * np.cos(t + 1))
        p[3], p[6], p[9] = [0.1, 0.05, 0], [0.05, 0, 0.03], [0.05, 0.02, 0]
        p[15] = [0.1 * np.sin(t), 0.2 * np.cos(t), 0]
        R = np.diag([1.0, -1.0, -1.0]) @ Rotation.from_rotvec([0, yaw + 0.3 * f / 30.0, 0]).as_matrix()
        p[0] = Rotation.from_matrix(R).as_rotvec()  # facing the camera, turned by yaw (camera frame)
    return pose


def _synth(body, rng, N=2, F=6, betas_sd=0.5, px_noise=2.0, world_noise=0.02):
    pose = np.stack([_gt_pose(rng, F, phase=n, yaw=rng.uniform(-0.8, 0.8)) for n in range(N)])
    betas = rng.normal(0, betas_sd, (N, 10))
    transl = np.stack([[[-0.8 + 1.6 * n + 0.03 * f, 0.3, 4.0 + 0.5 * n] for f in range(F)] for n in range(N)])
    t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    out = body(t(pose.reshape(-1, 24, 3)), t(np.repeat(betas, F, 0)), None, t(transl.reshape(-1, 3)))
    J = out.joints.numpy()
    ids = _extra_vertex_ids(body)
    X = np.zeros((N * F, 33, 3))
    conf = np.full((N * F, 33), 0.1)
    for c in MEDIAPIPE_TO_SMPL:
        X[:, c.landmark] = J[:, c.joint] if c.joint is not None else out.vertices.numpy()[:, ids[c.vertex]]
        conf[:, c.landmark] = 0.9
    for i in np.flatnonzero(conf[0] < 0.5):  # no counterpart: somewhere near the head, low confidence
        X[:, i] = J[:, 15] + rng.normal(0, 0.1, 3)
    uvw = X @ K.T
    uv = uvw[..., :2] / uvw[..., 2:] + rng.normal(0, px_noise, (N * F, 33, 2))
    kp = np.concatenate([uv, conf[..., None]], -1).reshape(N, F, 33, 3)
    world = X - 0.5 * (X[:, 23:24] + X[:, 24:25]) + rng.normal(0, world_noise, X.shape)
    return dict(kp=kp, world=world.reshape(N, F, 33, 3), pose=pose, betas=betas, transl=transl,
                joints=J.reshape(N, F, 24, 3))


def test_keypoint_model_matches_the_body_model(body):
    """The fitter's compact kinematics equals the body model's forward (joints and surface vertices)."""
    km = BodyKeypoints(body)
    rng = np.random.default_rng(3)
    pose = torch.as_tensor(rng.normal(0, 0.5, (5, 24, 3)), dtype=torch.float32)
    betas = torch.as_tensor(rng.normal(0, 1.0, (5, 10)), dtype=torch.float32)
    transl = torch.as_tensor(rng.normal(0, 1.0, (5, 3)), dtype=torch.float32)
    from showmaker.body import axis_angle_to_matrix

    joints, points = km(axis_angle_to_matrix(pose), betas, transl)
    ref = body(pose, betas, None, transl)
    ids = _extra_vertex_ids(body)
    torch.testing.assert_close(joints, ref.joints, atol=1e-5, rtol=0)
    torch.testing.assert_close(points, ref.vertices[:, [ids[n] for n in km.vertex_names]], atol=1e-5, rtol=0)


def test_joint_limit_signs_match_the_body_model(body):
    """The hinge assumes SMPLify's signs: knee +x and left elbow -y / right elbow +y bend forward-natural."""
    def joint(pose_edit, j):
        pose = torch.zeros(1, 24, 3)
        pose_edit(pose)
        return body(pose).joints[0, j].numpy()

    rest_ankle, rest_lwrist, rest_rwrist = joint(lambda p: None, 7), joint(lambda p: None, 20), joint(lambda p: None, 21)
    assert joint(lambda p: p[0, 4].copy_(torch.tensor([0.8, 0, 0])), 7)[2] < rest_ankle[2] - 0.1  # foot goes back
    assert joint(lambda p: p[0, 18].copy_(torch.tensor([0, -0.8, 0])), 20)[2] > rest_lwrist[2] + 0.1  # forearm forward
    assert joint(lambda p: p[0, 19].copy_(torch.tensor([0, 0.8, 0])), 21)[2] > rest_rwrist[2] + 0.1


def test_fit_with_world_landmarks_recovers_pose(body):
    rng = np.random.default_rng(0)
    gt = _synth(body, rng)
    t0 = time.perf_counter()
    res = fit_smpl(gt["kp"], K, gt["world"], body_model=body)
    seconds = time.perf_counter() - t0
    assert res["pose"].shape == (2, 6, 24, 3) and res["betas"].shape == (2, 10)
    assert res["transl_cam"].shape == (2, 6, 3) and res["valid"].all()
    mpjpe = mpjpe_root_aligned(res["joints_cam"], gt["joints"]) * 1000
    print(f"MPJPE (root-aligned) {mpjpe.mean():.1f} mm (max {mpjpe.max():.1f}), reprojection "
          f"{np.nanmean(res['residual']):.2f} px, {seconds:.1f} s for {gt['kp'].shape[:2]} actor-frames")
    assert mpjpe.mean() < 40.0 and mpjpe.max() < 60.0
    assert np.nanmean(res["residual"]) < 4.0  # 2 px noise: ~2.5 px mean error at the optimum
    # The returned parameters reproduce the returned joints through the body model (camera frame).
    t = lambda a: torch.as_tensor(a.reshape(12, *a.shape[2:]), dtype=torch.float32)  # noqa: E731
    betas = torch.as_tensor(np.repeat(res["betas"], 6, 0))
    joints = body(t(res["pose"]), betas, None, t(res["transl_cam"])).joints.numpy()
    np.testing.assert_allclose(joints.reshape(2, 6, 24, 3), res["joints_cam"], atol=1e-4)
    # Camera-frame placement: the pelvis depth within 10% (the body's size/depth ambiguity is left).
    np.testing.assert_allclose(res["joints_cam"][..., 0, 2], gt["joints"][..., 0, 2], rtol=0.1)


def test_fit_2d_only_reprojects_and_faces_the_right_way(body):
    """Without world landmarks the limbs' depth is ambiguous; the fit still explains the 2D keypoints and
    finds the facing direction among its four yaw hypotheses."""
    rng = np.random.default_rng(1)
    gt = _synth(body, rng, N=1, F=5)
    res = fit_smpl(gt["kp"][0], K, body_model=body)  # one actor: [F, 33, 3]
    assert res["pose"].shape == (5, 24, 3)
    assert np.nanmean(res["residual"]) < 4.0
    R_fit = Rotation.from_rotvec(res["pose"][:, 0])
    R_gt = Rotation.from_rotvec(gt["pose"][0, :, 0])
    forward = np.array([0, 0, 1.0])  # the body's facing direction, in the camera frame
    cos = (R_fit.apply(forward) * R_gt.apply(forward)).sum(-1)
    assert (cos > np.cos(np.radians(35))).all()
    mpjpe = mpjpe_root_aligned(res["joints_cam"], gt["joints"][0]) * 1000
    print(f"2D-only MPJPE {mpjpe.mean():.1f} mm, reprojection {np.nanmean(res['residual']):.2f} px")


def test_absent_frames_are_filled_and_flagged(body):
    rng = np.random.default_rng(2)
    gt = _synth(body, rng, N=2, F=5)
    kp = gt["kp"].copy()
    kp[0, 2, :, 2] = 0.0  # actor 0 undetected in frame 2
    kp[1, :, :, 2] = 0.0  # actor 1 never detected
    cfg = SmplFitConfig(lbfgs_steps=4)
    res = fit_smpl(kp, K, gt["world"], shot_ids=np.array([0, 0, 0, 1, 1]), body_model=body, cfg=cfg)
    assert res["valid"][0].tolist() == [True, True, False, True, True]
    assert not res["valid"][1].any()
    assert np.isnan(res["residual"][0, 2]) and np.isnan(res["residual"][1]).all()
    assert np.isfinite(res["residual"][0, [0, 1, 3, 4]]).all()
    for key in ("pose", "transl_cam", "joints_cam", "betas"):
        assert np.isfinite(res[key]).all(), key
    # The gap frame starts from its neighbour: it stays near the actor.
    assert np.linalg.norm(res["transl_cam"][0, 2] - gt["transl"][0, 2]) < 0.5


def test_smpl24_layout_and_warm_start(body):
    """Ground-truth SMPL joints as keypoints (the benchmark's oracle input); a warm start from the truth
    stays at the truth."""
    rng = np.random.default_rng(4)
    gt = _synth(body, rng, N=1, F=4, betas_sd=0.3)
    uvw = gt["joints"] @ K.T
    kp24 = np.concatenate([uvw[..., :2] / uvw[..., 2:] + rng.normal(0, 1.0, uvw[..., :2].shape),
                           np.full(uvw.shape[:-1] + (1,), 0.9)], -1)
    init = {"pose": gt["pose"], "betas": gt["betas"], "transl_cam": gt["transl"]}
    res = fit_smpl(kp24, K, body_model=body, init=init, cfg=SmplFitConfig(lbfgs_steps=4))
    assert np.nanmean(res["residual"]) < 2.5
    assert (mpjpe_root_aligned(res["joints_cam"], gt["joints"]) * 1000).mean() < 25.0


def test_input_validation(body):
    kp = np.zeros((1, 3, 33, 3))
    with pytest.raises(ValueError, match="33 landmarks or SMPL's 24"):
        fit_smpl(np.zeros((1, 3, 17, 3)), K, body_model=body)
    with pytest.raises(ValueError, match="K must be"):
        fit_smpl(kp, np.eye(4), body_model=body)
    with pytest.raises(ValueError, match="world_landmarks"):
        fit_smpl(np.zeros((1, 3, 24, 3)), K, world_landmarks=np.zeros((1, 3, 33, 3)), body_model=body)
    with pytest.raises(ValueError, match="optimizer"):
        fit_smpl(kp, K, body_model=body, cfg=SmplFitConfig(optimizer="sgd"))


def test_layout_agrees_with_the_people_estimator():
    """Our landmark names and exact joint correspondences match showmaker.estimate.people's."""
    people = pytest.importorskip("showmaker.estimate.people")
    assert MEDIAPIPE_LANDMARKS == tuple(people.MP_LANDMARK_NAMES)
    ours = {c.joint: c.landmark for c in MEDIAPIPE_TO_SMPL if c.joint is not None}
    assert ours == dict(people.SMPL_FROM_MP)


# ------------------------------------------------------------------------------------------------- CoMotion
import sys  # noqa: E402
import types  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from showmaker.estimate import comotion as cm  # noqa: E402
from showmaker.estimate.depth_models import (  # noqa: E402
    CheckpointNotFoundError,
    CorruptCheckpointError,
    MissingCheckpointError,
    ModelCodeMissingError,
)


@pytest.fixture(autouse=True)
def _no_comotion_env(monkeypatch):
    monkeypatch.delenv(cm.COMOTION_CHECKPOINT_ENV, raising=False)


@dataclass
class _Track:
    """Stand-in for CoMotion's per-frame track state (fields [1, T, ...])."""

    id: torch.Tensor
    pose: torch.Tensor
    trans: torch.Tensor
    betas: torch.Tensor

    def cpu(self):
        return self


class _FakeDecoder(torch.nn.Module):
    def forward(self, betas, pose, trans, output_format="joints"):
        assert output_format == "joints"
        return trans[:, None, :] + torch.zeros(trans.shape[0], 24, 3)  # pelvis at trans


class FakeCoMotion(torch.nn.Module):
    """Mimics comotion_demo.models.comotion.CoMotion: two trackable people with ids 5 (frames 0-2, slot 0)
    and 7 (frames 1-3, slot 1); pose/trans/betas encode (id, frame) so the scatter can be checked."""

    def __init__(self, use_coreml=False, pretrained=True):
        super().__init__()
        assert not pretrained  # the adapter loads the user's files itself
        self.detection_model = torch.nn.Linear(3, 4)
        self.update_step = torch.nn.Linear(4, 2)
        self.smpl_decoder = _FakeDecoder()
        self.frame = 0
        self.seen = []

    def init_tracks(self, image_res):
        self.res = tuple(image_res)
        self.frame = 0

    def forward(self, image, K):
        self.seen.append((tuple(image.shape), image.dtype, K.clone()))
        f = self.frame
        self.frame += 1
        ids = torch.tensor([5 if f <= 2 else 0, 7 if f >= 1 else 0], dtype=torch.float32)
        pose = torch.zeros(1, 2, 72)
        pose[0, :, 0] = ids + 0.1 * f
        trans = torch.stack([torch.full((3,), float(i) + f) for i in ids])[None]
        betas = ids[None, :, None].expand(1, 2, 10).clone()
        return {"conf": torch.ones(1, 1)}, _Track(ids[None, :, None], pose, trans, betas)


def _install_fake_comotion(monkeypatch):
    pkg, models, mod = (types.ModuleType(n) for n in ("comotion_demo", "comotion_demo.models",
                                                        "comotion_demo.models.comotion"))
    utils, track = types.ModuleType("comotion_demo.utils"), types.ModuleType("comotion_demo.utils.track")
    mod.CoMotion = FakeCoMotion
    track.cleanup_tracks = lambda data, K, decoder, min_matched_frames=1: {"ok": True}
    track.convert_to_idxs = lambda ref, ids: tuple(torch.nonzero(ids > 0, as_tuple=True))
    pkg.models, models.comotion, pkg.utils, utils.track = models, mod, utils, track
    for name, m in (("comotion_demo", pkg), ("comotion_demo.models", models), ("comotion_demo.models.comotion", mod),
                    ("comotion_demo.utils", utils), ("comotion_demo.utils.track", track)):
        monkeypatch.setitem(sys.modules, name, m)


def _comotion_folder(tmp_path, drop_detection_key=False):
    net = FakeCoMotion(pretrained=False)
    det = net.detection_model.state_dict()
    if drop_detection_key:
        det.pop("bias")
    torch.save(det, tmp_path / cm.COMOTION_FILES["detection"])
    torch.save(net.update_step.state_dict(), tmp_path / cm.COMOTION_FILES["refine"])
    return tmp_path


def test_comotion_without_checkpoint_says_what_to_do():
    with pytest.raises(MissingCheckpointError) as e:
        cm.load_comotion(None)
    msg = str(e.value)
    assert cm.COMOTION_CHECKPOINT_ENV in msg and cm.COMOTION_CHECKPOINT_FLAG in msg
    assert "get_pretrained_models.sh" in msg and "smpl_fit" in msg


def test_comotion_checkpoint_paths(tmp_path, monkeypatch):
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        cm.load_comotion(tmp_path / "missing")
    monkeypatch.setenv(cm.COMOTION_CHECKPOINT_ENV, str(tmp_path / "also_missing"))
    with pytest.raises(CheckpointNotFoundError, match="also_missing"):
        cm.load_comotion()
    a_file = tmp_path / "weights.pt"
    a_file.write_bytes(b"x")
    with pytest.raises(CheckpointNotFoundError, match="must be a folder"):
        cm.load_comotion(a_file)
    (tmp_path / cm.COMOTION_FILES["detection"]).write_bytes(b"x")
    with pytest.raises(CheckpointNotFoundError, match=cm.COMOTION_FILES["refine"]):
        cm.load_comotion(tmp_path)


def test_comotion_code_not_installed(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "comotion_demo", None)
    for name in cm.COMOTION_FILES.values():
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(ModelCodeMissingError) as e:
        cm.load_comotion(tmp_path)
    assert "github.com/apple/ml-comotion" in str(e.value) and "SMPL_NEUTRAL.pkl" in str(e.value)


def test_comotion_corrupt_and_mismatched_checkpoints(tmp_path, monkeypatch):
    _install_fake_comotion(monkeypatch)
    for name in cm.COMOTION_FILES.values():
        (tmp_path / name).write_bytes(b"garbage, not a torch file")
    with pytest.raises(CorruptCheckpointError, match="not a readable"):
        cm.load_comotion(tmp_path)
    _comotion_folder(tmp_path, drop_detection_key=True)
    with pytest.raises(CorruptCheckpointError, match="'bias'"):
        cm.load_comotion(tmp_path)


def test_comotion_predict_layout(tmp_path, monkeypatch, body):
    _install_fake_comotion(monkeypatch)
    est = cm.load_comotion(_comotion_folder(tmp_path))
    frames = np.zeros((4, 24, 32, 3), np.uint8)
    out = est.predict(frames, K)
    assert est.model.res == (24, 32) and len(est.model.seen) == 4
    shape, dtype, K23 = est.model.seen[0]
    assert shape == (3, 24, 32) and dtype == torch.uint8 and K23.shape == (2, 3)
    np.testing.assert_allclose(K23.numpy(), K[:2])
    assert out["track_ids"].tolist() == [5, 7]
    assert out["valid"].tolist() == [[True, True, True, False], [False, True, True, True]]
    assert out["pose"].shape == (2, 4, 24, 3) and out["transl_cam"].shape == (2, 4, 3)
    assert out["pose"][0, 2, 0, 0] == pytest.approx(5.2) and out["pose"][1, 3, 0, 0] == pytest.approx(7.3)
    assert out["transl_cam"][1, 1].tolist() == [8.0, 8.0, 8.0] and (out["transl_cam"][0, 3] == 0).all()
    assert out["betas"][:, 0].tolist() == [5.0, 7.0]
    assert np.isnan(out["residual"]).all()
    rebased = cm.rebase_to_body_model(out, body)
    j0 = body(torch.zeros(1, 24, 3)).joints[0, 0].numpy()
    np.testing.assert_allclose(rebased["transl_cam"][0, 0] + j0, out["pelvis_cam"][0, 0], atol=1e-5)
    assert (rebased["betas"] == 0).all()
