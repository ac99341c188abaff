"""A clip with no ground truth through every real estimator into a project directory (TV-show setting:
the clip plus background images of the set)."""
import dataclasses
import json

import numpy as np
import pytest

from showmaker.project import Project
from showmaker.reconstruct import IngestConfig, ReconstructionConfig, build_pipeline
from showmaker.splat import load_ply

pytest.importorskip("mediapipe")
pytest.importorskip("pycolmap")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(default_clip, tmp_path_factory):
    root = tmp_path_factory.mktemp("real") / "proj"
    # Only the video and the background images: the ground truth is not an input.
    proj = Project.create(root, {"clip": default_clip.video_path, "background": default_clip.background_dir})
    cfg = ReconstructionConfig.preset("tiny", estimators="real", depth_mode="none")
    cfg.ingest = IngestConfig(stride=2)  # 36 frames keep the test short
    cfg.stage.train = dataclasses.replace(cfg.stage.train, iterations=60)
    ran = build_pipeline(cfg, inputs=proj.inputs).run(proj)
    assert set(ran.values()) == {"ran"}
    return root


def test_every_estimator_wrote_its_outputs(project, default_clip):
    stages = project / "stages"
    shots = np.load(stages / "shots" / "shots.npz")
    # Cuts at frames 30 and 48 of the clip are frames 15 and 24 after the stride of 2.
    np.testing.assert_array_equal(shots["cuts"], [15, 24])
    masks = np.load(stages / "masks" / "masks.npz")["instances"]
    assert masks.shape == (36, 240, 320) and len(np.unique(masks)) >= 3  # stage + two people
    cams = np.load(stages / "cameras" / "cameras.npz")
    assert cams["registered"].mean() >= 0.9
    assert json.loads((stages / "depth" / "alignment.json").read_text()) == {"mode": "none"}
    smpl = np.load(stages / "smpl_init" / "smpl_init.npz")
    assert smpl["pose"].shape[0] >= 2 and smpl["valid"].any()
    assert len(load_ply(stages / "stage" / "stage.ply")) > 100


def test_cameras_match_the_hidden_ground_truth(project, default_clip):
    from showmaker.estimate.cameras import camera_errors

    cams = np.load(project / "stages" / "cameras" / "cameras.npz")
    err = camera_errors(cams["viewmats"], default_clip.viewmats[::2], cams["registered"])
    assert err["rot_mean_deg"] < 2.0, err["rot_mean_deg"]
