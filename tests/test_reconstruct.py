"""The reconstruction graph end to end on the tiny synthetic clip (oracle estimators, tiny preset)."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from showmaker.project import Project
from showmaker.estimate.cameras import camera_errors
from showmaker.evaluate import evaluate_project
from showmaker.reconstruct import ReconstructionConfig, build_pipeline, check_inputs
from showmaker.splat import load_ply


def _cfg(iterations=150):
    cfg = ReconstructionConfig.preset("tiny", estimators="oracle")
    cfg.stage.train = dataclasses.replace(cfg.stage.train, iterations=iterations)
    return cfg


@pytest.fixture(scope="module")
def project(tiny, tmp_path_factory):
    _, path, _ = tiny
    root = tmp_path_factory.mktemp("recon") / "proj"
    proj = Project.create(root, {"clip": path / "clip.mp4", "ground_truth": path})
    ran = build_pipeline(_cfg()).run(proj)
    assert set(ran.values()) == {"ran"}
    return root


def test_outputs_exist_and_rerun_is_cached(project):
    ply = load_ply(project / "stages" / "stage" / "stage.ply")
    assert len(ply) > 100
    ran = build_pipeline(_cfg()).run(Project.open(project))
    assert set(ran.values()) == {"cached"}
    # A changed stage setting recomputes the stage only.
    ran = build_pipeline(_cfg(iterations=20)).run(Project.open(project))
    assert ran["stage"] == "ran" and ran["cameras"] == "cached"


def test_levelled_world_has_the_floor_at_zero(project, tiny):
    _, _, clip = tiny
    scene = np.load(project / "stages" / "level" / "scene.npz")
    cams = np.load(project / "stages" / "cameras" / "cameras.npz")
    gt_from_est = camera_errors(cams["viewmats"], clip.viewmats, cams["registered"])["gt_from_est"]
    s = np.cbrt(np.linalg.det(gt_from_est[:3, :3]))
    # Camera heights above the floor (levelled frame, rescaled to metres) match the ground truth's (floor z = 0).
    centers = -np.einsum("fji,fj->fi", scene["viewmats"][:, :3, :3], scene["viewmats"][:, :3, 3])
    gt_centers = -np.einsum("fji,fj->fi", clip.viewmats[:, :3, :3], clip.viewmats[:, :3, 3])
    np.testing.assert_allclose(centers[:, 2] * s, gt_centers[:, 2], atol=0.05)


def test_depth_alignment_covers_the_frames(project):
    align = json.loads((project / "stages" / "depth" / "alignment.json").read_text())
    assert sum(align["valid"]) >= len(align["valid"]) - 1, align["rejected"]


def test_evaluation_against_ground_truth(project):
    scores = evaluate_project(project)
    st = scores["stage"]
    assert st["psnr"] > 14.0, st
    assert st["depth_abs_rel"] < 0.25, st
    assert st["coverage"] > 0.8, st
    # The oracle cameras carry small noise only: after the similarity alignment they are nearly exact.
    assert scores["estimators"]["cameras"]["rot_mean_deg"] < 0.5
    assert scores["estimators"]["shots"]["recall"] == 1.0


def test_oracle_refuses_a_clip_without_ground_truth(tiny, tmp_path):
    _, path, _ = tiny
    proj = Project.create(tmp_path / "p", {"clip": path / "clip.mp4"})
    with pytest.raises(ValueError, match="ground truth"):
        check_inputs(proj.inputs, "oracle")
    check_inputs(proj.inputs, "real")


def test_background_images_become_stage_views(tmp_path):
    """TV-show setting: registered background images join the stage's training views (all background, no
    depth target, resized to the clip's size with their intrinsics scaled); unregistered ones do not."""
    from showmaker.atomic import atomic_save_npz
    from showmaker.reconstruct import train_views

    F, H, W = 4, 12, 16
    K = np.array([[20.0, 0, 8], [0, 20, 6], [0, 0, 1]])
    vm = np.repeat(np.eye(4)[None], F, 0)
    for name in ("level", "masks", "depth"):
        (tmp_path / name).mkdir()
    atomic_save_npz(tmp_path / "level" / "scene.npz", Ks=np.repeat(K[None], F, 0), viewmats=vm,
                    registered=np.array([True, True, False, True]), bg_Ks=np.repeat((K * [[2], [2], [1]])[None], 2, 0),
                    bg_viewmats=np.repeat(np.eye(4)[None], 2, 0), bg_registered=np.array([True, False]))
    atomic_save_npz(tmp_path / "masks" / "masks.npz", instances=np.ones((F, H, W), np.uint8))
    atomic_save_npz(tmp_path / "depth" / "depth.npz", aligned=np.ones((F, H, W), np.float32))
    frames = np.zeros((F, H, W, 3), np.uint8)
    background = [np.full((2 * H, 2 * W, 3), 200, np.uint8), np.zeros((2 * H, 2 * W, 3), np.uint8)]
    dirs = {n: tmp_path / n for n in ("level", "masks", "depth")}
    views, held, _ = train_views(dirs, frames, holdout_every=0, background=background)
    assert views.n == 3 + 1  # frames 0, 1, 3 and the first background image
    torch.testing.assert_close(views.Ks[-1], torch.tensor(K, dtype=torch.float32))
    assert views.masks[-1].all() and not views.masks[0].any()  # clip frames: actor everywhere here
    assert torch.isnan(views.depths[-1]).all() and not torch.isnan(views.depths[0]).any()
    assert abs(float(views.images[-1].mean()) - 200 / 255) < 1e-6
