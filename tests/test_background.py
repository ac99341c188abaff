"""Background images of the set (TV-show setting) through the reconstruction graph: the ``background`` project
input reaches ``estimate_cameras`` and keys the cameras stage. SfM itself is replaced by a stub (fast); the
real run on the default clip is measured in docs/estimators.md."""
import shutil

import numpy as np
import pytest
from PIL import Image

import showmaker.reconstruct as recon
from showmaker.cli import main
from showmaker.atomic import atomic_save_npz
from showmaker.project import Project
from showmaker.reconstruct import ReconstructionConfig, build_pipeline, load_background_images


@pytest.fixture
def stub_sfm(tiny, monkeypatch):
    """Real ingest and shot detection; ground-truth masks instead of mediapipe; a stub ``estimate_cameras``
    that records its arguments and returns the true cameras. Yields the list of recorded calls."""
    _, _, clip = tiny
    calls = []

    def fake_masks(ctx):
        atomic_save_npz(ctx.out_dir / "masks.npz", instances=clip.masks)

    def fake_estimate_cameras(frames, actor_masks, shot_ids, cfg, background_images=None, workdir=None, **kw):
        calls.append({"frames": frames, "background_images": background_images})
        F = len(frames)
        return {"Ks": clip.K, "viewmats": clip.viewmats, "registered": np.ones(F, bool),
                "points": np.zeros((1, 3)), "colors": np.zeros((1, 3)), "vis_frame": np.zeros(0, int),
                "vis_point": np.zeros(0, int),
                "report": {"n_background_images": len(background_images or [])}}

    monkeypatch.setattr(recon, "run_masks", fake_masks)
    monkeypatch.setattr(recon, "estimate_cameras", fake_estimate_cameras)
    return calls


def _project(tmp_path, clip_path, background=None):
    inputs = {"clip": clip_path / "clip.mp4"}
    if background is not None:
        inputs["background"] = background
    return Project.create(tmp_path / "proj", inputs)


def test_cameras_stage_passes_the_background_images(tiny, stub_sfm, tmp_path):
    _, path, clip = tiny
    bg = tmp_path / "bg"
    shutil.copytree(clip.background_dir, bg)
    proj = _project(tmp_path, path, bg)
    pipe = build_pipeline(ReconstructionConfig(), inputs=proj.inputs)
    assert pipe.stages["cameras"].inputs == ("background",)
    assert pipe.stages["stage"].inputs == ("background",)  # more training views for the stage
    assert all("background" not in s.inputs for n, s in pipe.stages.items() if n not in ("cameras", "stage"))
    ran = pipe.run(proj, until="cameras")
    assert ran["cameras"] == "ran"
    (call,) = stub_sfm
    images = call["background_images"]
    assert len(images) == len(clip.background_images) == 2
    for got, want in zip(images, clip.background_images):  # sorted by name, RGB uint8
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, want)
    assert len(call["frames"]) == clip.frame_count


def test_changing_the_background_folder_reruns_the_cameras_stage_only(tiny, stub_sfm, tmp_path):
    _, path, clip = tiny
    bg = tmp_path / "bg"
    shutil.copytree(clip.background_dir, bg)
    proj = _project(tmp_path, path, bg)
    cfg = ReconstructionConfig()
    build_pipeline(cfg, inputs=proj.inputs).run(proj, until="cameras")
    key = {p.name: p.cache_key for p in build_pipeline(cfg, inputs=proj.inputs).plan(proj, until="cameras")}
    ran = build_pipeline(cfg, inputs=proj.inputs).run(Project.open(proj.root), until="cameras")
    assert set(ran.values()) == {"cached"}

    # One more image of the set: the cameras stage (and only it) has a new key and runs again, with 3 images.
    Image.fromarray(clip.background_images[0][:, ::-1]).save(bg / "000002.png")
    proj = Project.open(proj.root)
    proj.refresh_inputs()
    plan = {p.name: p for p in build_pipeline(cfg, inputs=proj.inputs).plan(proj, until="cameras")}
    assert plan["cameras"].cache_key != key["cameras"] and plan["cameras"].will_run
    assert all(plan[n].cache_key == key[n] and not plan[n].will_run for n in ("ingest", "shots", "masks"))
    ran = build_pipeline(cfg, inputs=proj.inputs).run(proj, until="cameras")
    assert ran == {"ingest": "cached", "shots": "cached", "masks": "cached", "cameras": "ran"}
    assert len(stub_sfm[-1]["background_images"]) == 3


def test_without_background_the_graph_is_unchanged(tiny, stub_sfm, tmp_path):
    """No background input: SfM gets none and the cameras stage's key is what it was before background
    images existed; the oracle cameras ignore background images (their key does not depend on them)."""
    _, path, clip = tiny
    proj = _project(tmp_path, path)
    pipe = build_pipeline(ReconstructionConfig(), inputs=proj.inputs)
    assert pipe.stages["cameras"].inputs == ()
    pipe.run(proj, until="cameras")
    assert stub_sfm[-1]["background_images"] is None
    assert build_pipeline(ReconstructionConfig()).stages["cameras"].inputs == ()
    oracle = build_pipeline(ReconstructionConfig(estimators="oracle"), inputs=("clip", "ground_truth", "background"))
    assert oracle.stages["cameras"].inputs == ("ground_truth",)


def test_load_background_images_sorts_converts_and_refuses_an_empty_folder(tmp_path):
    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    Image.fromarray(rgba).save(tmp_path / "b.png")
    Image.fromarray(np.full((5, 7), 90, np.uint8)).save(tmp_path / "a.JPG")
    (tmp_path / "notes.txt").write_text("not an image")
    images = load_background_images(tmp_path)
    assert [im.shape for im in images] == [(5, 7, 3), (6, 8, 3)]  # a.JPG first, grey -> RGB; RGBA -> RGB
    assert all(im.dtype == np.uint8 for im in images) and images[1][0, 0].tolist() == [200, 0, 0]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no image"):
        load_background_images(empty)
    with pytest.raises(ValueError, match="is not a folder"):
        load_background_images(tmp_path / "missing")


def test_cli_refuses_a_background_folder_without_images(tiny, tmp_path, capsys):
    _, path, _ = tiny
    empty = tmp_path / "empty"
    empty.mkdir()
    rc = main(["reconstruct", str(path / "clip.mp4"), "-o", str(tmp_path / "p"), "--background", str(empty)])
    assert rc == 1
    assert "holds no image" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()  # refused before the project was made
