"""The synthetic clip: spec validation, motion, rendering with real Blender, ground-truth consistency, reader."""
import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from showmaker.geometry import backproject_depth, project_points
from showmaker.synth import SpecError, default_spec, generate_clip, load_clip, load_spec, parse_spec
from showmaker.synth.background import background_cameras
from showmaker.synth.cli import synth_main
from showmaker.synth.generate import cache_root, clip_key, prepare
from showmaker.synth.video import count_video_frames


# -- spec -------------------------------------------------------------------------------------------------

def test_default_spec_round_trips():
    spec = default_spec()
    assert parse_spec(json.loads(json.dumps(spec.to_dict()))) == spec
    assert (spec.width, spec.height, spec.fps, len(spec.shots), len(spec.actors)) == (320, 240, 24, 3, 2)
    assert spec.background.count == 12 and spec.background.resolution is None
    assert {s.type for a in spec.actors for s in a.motion} >= {"walk", "turn", "sit_down", "gesture"}


def _set(d, path, value):
    keys = path.split(".")
    for k in keys[:-1]:
        d = d[int(k)] if isinstance(d, list) else d[k]
    last = keys[-1]
    if value is _DELETE:
        del d[last]
    elif isinstance(d, list):
        d[int(last)] = value
    else:
        d[last] = value


_DELETE = object()


@pytest.mark.parametrize("path,value,message", [
    ("actors.1.motion.0.type", "jog",
     "spec.actors[1].motion[0].type: unknown motion 'jog'; expected one of walk, turn, sit_down, gesture, idle"),
    ("resolution", [321, 240], "spec.resolution: 321x240 must be even"),
    ("fps", _DELETE, "spec.fps: missing"),
    ("shots.1.frames", 5, "spec.shots: shot lengths add up to 59 frames but spec.frame_count is 72"),
    ("shots.1.camera", "crane", "spec.shots[1].camera: unknown camera 'crane'; expected one of wide, close"),
    ("shots.1.camera", "wide", "spec.shots[1].camera: same camera as the shot before"),
    ("actors.0.clothing.shirt", "red", "spec.actors[0].clothing.shirt: expected an sRGB colour"),
    ("actors.0.scale", 3.0, "spec.actors[0].scale: 3.0 is out of range"),
    ("actors.0.motion.0.to", [9.0, 0.0], "spec.actors[0].motion[0].to: (9, 0) is outside the room"),
    ("actors.0.motion.0.to", [1.0, -1.0], "spec.actors[0].motion[2]: sit_down starts at (1, -1)"),
    ("actors.0.motion.1.heading_deg", 90, "spec.actors[0].motion[2]: sit_down starts facing heading 90"),
    ("actors.0.motion.3.frames", 100, "spec.actors[0].motion: segments last 162 frames"),
    ("actors.1.on_stage", [5, 80], "spec.actors[1].on_stage: [5, 80] is not a frame range"),
    ("actors.1.name", "alice", "spec.actors[1].name: duplicate actor name 'alice'"),
    ("stage.colour", "red", "spec.stage: unknown field 'colour'"),
    ("stage.couch.center", [2.5, 1.95], "spec.stage.couch.center: the couch at (2.5, 1.95) sticks out of the room"),
    ("cameras.0.target", [0.2, -4.3, 0.0], "spec.cameras[0].target: the camera looks straight up or down"),
    ("render.samples", 0, "spec.render.samples: 0 is out of range"),
    ("background.count", -1, "spec.background.count: -1 is out of range"),
    ("background.count", _DELETE, "spec.background.count: missing"),
    ("background.fov", 50, "spec.background: unknown field 'fov'"),
    ("background.fov_deg", 150, "spec.background.fov_deg: 150 is out of range"),
    ("background.resolution", [8, 480], "spec.background.resolution: 8x480 must be sizes in [16, 4096]"),
    ("background", [12], "spec.background: expected an object"),
])
def test_spec_errors_name_the_field(path, value, message):
    d = default_spec().to_dict()
    _set(d, path, value)
    with pytest.raises(SpecError) as e:
        parse_spec(d)
    assert message in str(e.value)


def test_background_spec_is_optional_and_round_trips():
    d = default_spec().to_dict()
    del d["background"]
    spec = parse_spec(d)
    assert spec.background.count == 0 and "background" not in spec.to_dict()  # as in specs made before it
    d["background"] = {"count": 3, "resolution": [641, 481], "fov_deg": 70}  # any size: no video
    spec = parse_spec(d)
    assert parse_spec(spec.to_dict()) == spec and spec.background.resolution == (641, 481)
    assert spec.with_size(160, 120).background.resolution == (641, 481)


def test_background_cameras_look_into_the_room_between_the_clip_cameras():
    """Standing height, inside the room or on the apron, looking at the set, and spread over the clip cameras'
    directions: every clip camera has a background view within 25 degrees of its viewing direction."""
    spec = default_spec()
    K, viewmats = background_cameras(spec)
    B = spec.background.count
    assert K.shape == (B, 3, 3) and viewmats.shape == (B, 4, 4)
    np.testing.assert_allclose(K[:, 0, 0], 0.5 * spec.width / np.tan(np.radians(spec.background.fov_deg / 2)))
    centers = -np.einsum("bji,bj->bi", viewmats[:, :3, :3], viewmats[:, :3, 3])
    st = spec.stage
    assert np.all(np.abs(centers[:, 0]) < st.width / 2) and np.all(centers[:, 1] < st.depth / 2)
    assert np.all(np.abs(centers[:, 2] - 1.6) <= 0.15 + 1e-9)
    forward = viewmats[:, 2, :3]
    assert np.all(forward[:, 1] > 0.3) and np.all(forward[:, 2] < 0)  # into the room, slightly down
    prep_views = [(c.eye, c.target) for c in spec.cameras] + [(c.eye_end, c.target_end) for c in spec.cameras]
    for eye, target in prep_views:
        d = np.subtract(target, eye)
        d /= np.linalg.norm(d)
        assert np.degrees(np.arccos(np.clip(forward @ d, -1, 1))).min() < 25.0
    np.testing.assert_array_equal(background_cameras(spec)[1], viewmats)  # deterministic
    d = spec.to_dict()
    d["background"]["count"] = 0
    K0, v0 = background_cameras(parse_spec(d))
    assert K0.shape == (0, 3, 3) and v0.shape == (0, 4, 4)


def test_load_spec_reports_bad_json(tmp_path):
    p = tmp_path / "scene.json"
    p.write_text("{nope")
    with pytest.raises(SpecError, match="not valid JSON"):
        load_spec(p)
    p.write_text(json.dumps(default_spec().to_dict()))
    assert load_spec(p) == default_spec()


def test_with_frames_keeps_the_story():
    spec = default_spec().with_frames(8)
    assert spec.frame_count == 8 and [s.camera for s in spec.shots] == ["wide", "close", "wide"]
    assert sum(s.frames for s in spec.shots) == 8
    assert all(sum(m.frames for m in a.motion) <= 8 for a in spec.actors)
    with pytest.raises(SpecError, match="frame_count: 2 frames cannot hold 3 shots"):
        default_spec().with_frames(2)


# -- motion (body model, no rendering) -----------------------------------------------------------------------

def test_tracks_stand_on_the_floor_face_their_heading_and_sit_on_the_couch(model):
    spec = default_spec()
    prep = prepare(spec, model)
    alice, bob = prep.tracks
    for tr in (alice, bob):  # model.forward with the stored parameters gives the posed body
        out = model.forward(torch.as_tensor(tr.pose, dtype=torch.float32),
                            torch.as_tensor(tr.betas[None], dtype=torch.float32),
                            torch.full((len(tr.pose),), tr.scale), torch.as_tensor(tr.transl, dtype=torch.float32))
        np.testing.assert_allclose(out.vertices.numpy(), tr.vertices, atol=1e-4)
        np.testing.assert_allclose(out.joints.numpy(), tr.joints, atol=1e-4)
    # Standing frames: the lowest vertex is on the floor.
    np.testing.assert_allclose(bob.vertices[:, :, 2].min(1), 0.0, atol=1e-5)
    np.testing.assert_allclose(alice.vertices[:30, :, 2].min(1), 0.0, atol=1e-5)
    # Facing: forward = (left hip - right hip) x up points along the heading.
    lr = alice.joints[0, 1] - alice.joints[0, 2]
    fwd = np.cross(lr, [0, 0, 1])
    h = np.radians(spec.actors[0].heading_deg)
    assert np.dot(fwd[:2] / np.linalg.norm(fwd[:2]), [np.cos(h), np.sin(h)]) > 0.95
    # Seated at the end: pelvis above the seat, inside the couch footprint, thighs roughly horizontal.
    couch = spec.stage.couch
    pelvis, knee = alice.joints[-1, 0], alice.joints[-1, 4]
    assert couch.seat_height < pelvis[2] < couch.seat_height + 0.3
    assert abs(pelvis[0] - couch.center[0]) < couch.width / 2 and abs(pelvis[1] - couch.center[1]) < couch.depth / 2
    assert abs(knee[2] - pelvis[2]) < 0.12
    # Walking moves the body at a human pace (< 2 m/s) and it ends where the script says.
    speed = np.linalg.norm(np.diff(alice.joints[:30, 0, :2], axis=0), axis=1) * spec.fps
    assert 0.5 < speed.max() < 2.0
    np.testing.assert_allclose(alice.joints[29, 0, :2], spec.actors[0].motion[0].to, atol=1e-6)


# -- the rendered tiny clip ----------------------------------------------------------------------------------

@pytest.mark.blender
def test_reader_round_trips(tiny, model):
    spec, path, clip = tiny
    F, H, W = 8, 72, 96
    assert clip.spec == spec and clip.frame_count == F and clip.fps == 24.0
    assert clip.frames[0].shape == (H, W, 3) and clip.frames[0].dtype == np.uint8
    assert clip.frames[1:3].shape == (2, H, W, 3)
    assert clip.K.shape == (F, 3, 3) and clip.viewmats.shape == (F, 4, 4)
    assert clip.depth.shape == (F, H, W) and clip.depth.dtype == np.float32
    assert clip.masks.shape == (F, H, W) and clip.masks.dtype == np.uint8
    assert clip.smpl["pose"].shape == (2, F, 24, 3) and clip.smpl["transl"].shape == (2, F, 3)
    assert clip.smpl["betas"].shape == (2, 10) and clip.smpl["scale"].shape == (2,)
    assert clip.joints2d.shape == (2, F, 24, 2) and clip.joint_visible.shape == (2, F, 24)
    assert list(clip.shot_ids) == [0, 0, 0, 1, 1, 2, 2, 2] and clip.cuts == [3, 5]
    assert clip.actor_names == ["alice", "bob"]
    assert clip.smpl["present"][1].tolist() == [True] * 5 + [False] * 3
    prep = prepare(spec, model)
    np.testing.assert_allclose(clip.K, prep.cameras.K)
    np.testing.assert_allclose(clip.viewmats, prep.cameras.viewmats)
    np.testing.assert_allclose(clip.smpl["transl"][0], prep.tracks[0].transl, atol=1e-6)
    np.testing.assert_array_equal(clip.body_faces, model.faces)
    assert count_video_frames(clip.video_path) == F
    assert np.isfinite(clip.depth).mean() > 0.5 and np.isinf(clip.depth).any()  # the studio behind the set
    normal, offset = clip.floor
    assert normal.tolist() == [0, 0, 1] and offset == 0.0
    # Background images: the set without actors, with their cameras.
    assert len(clip.background_images) == 2 and clip.background_images[1].shape == (H, W, 3)
    assert [p.name for p in clip.background_paths] == ["000000.png", "000001.png"]
    assert all(p.is_file() and p.parent == clip.background_dir for p in clip.background_paths)
    assert clip.background_K.shape == (2, 3, 3) and clip.background_viewmats.shape == (2, 4, 4)
    np.testing.assert_allclose(clip.background_K, prep.background_K)
    np.testing.assert_allclose(clip.background_viewmats, prep.background_viewmats)
    assert clip.meta["background"] == {"count": 2, "width": W, "height": H}


@pytest.mark.blender
def test_a_clip_without_background_images_reads_as_none(tiny, tmp_path):
    """Clips made without background images (or before they existed) have neither file: empty, not an error."""
    import shutil

    _, path, _ = tiny
    bare = tmp_path / "bare"
    shutil.copytree(path, bare, ignore=shutil.ignore_patterns("background*"))
    clip = load_clip(bare)
    assert len(clip.background_images) == 0 and clip.background_paths == []
    assert clip.background_K.shape == (0, 3, 3) and clip.background_viewmats.shape == (0, 4, 4)


@pytest.mark.blender
def test_background_views_agree_with_the_clip_ground_truth(tiny):
    """Stage pixels of every clip frame, lifted with their depth and projected with a background image's true
    camera, land on pixels of the same colour (the background images have no depth, so pixels hidden from
    the background view count too: the median is what is checked). A camera turned by 2 degrees does worse."""
    _, _, clip = tiny

    def colour_error(b, viewmat):
        img = clip.background_images[b].astype(float)
        h, w = img.shape[:2]
        diffs = []
        for f in range(clip.frame_count):
            ok = (clip.masks[f] == 0) & np.isfinite(clip.depth[f])
            pts = backproject_depth(np.where(ok, clip.depth[f], 0.0).astype(np.float64), clip.K[f],
                                    clip.viewmats[f])[ok]
            uv, z = project_points(pts, viewmat, clip.background_K[b])
            c, r = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
            inside = (z > 0) & (c >= 0) & (c < w) & (r >= 0) & (r < h)
            diffs.append(np.abs(img[r[inside], c[inside]] - clip.frames[f][ok][inside].astype(float)).mean(-1))
        d = np.concatenate(diffs)
        assert len(d) > 5000
        return np.median(d)

    turn = np.eye(4)
    a = np.radians(2.0)
    turn[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    for b in range(len(clip.background_images)):
        true = colour_error(b, clip.background_viewmats[b])
        assert true < 10.0, b
        assert colour_error(b, turn @ clip.background_viewmats[b]) > true + 1.5, b


@pytest.mark.blender
def test_generation_is_cached_and_deterministic(tiny, model):
    spec, path, clip = tiny
    stamp = (path / "meta.json").stat().st_mtime_ns
    assert generate_clip(spec, path, model=model) == path
    assert (path / "meta.json").stat().st_mtime_ns == stamp  # served from the cache, not rendered again
    f = 6
    renderer = prepare(spec, model).renderer(threads=2)
    try:
        again = renderer.render(f)
    finally:
        renderer.close()
    np.testing.assert_array_equal(again.depth, clip.depth[f])
    np.testing.assert_array_equal(again.mask, clip.masks[f])
    assert np.abs(again.rgb.astype(int) - clip.frames[f].astype(int)).mean() < 1.0


@pytest.mark.blender
def test_depth_is_planar_z_floor_lies_at_zero(tiny):
    """Back-projecting the depth as planar camera z puts floor pixels on z = 0 (radial distance read as
    planar z would push them up to 20 cm under the floor towards the image edges)."""
    _, _, clip = tiny
    for f in (0, 6):
        finite = np.isfinite(clip.depth[f])
        pts = backproject_depth(np.where(finite, clip.depth[f], 0.0).astype(np.float64), clip.K[f],
                                clip.viewmats[f])
        low = (clip.masks[f] == 0) & finite & (pts[..., 2] < 0.1)
        assert low.sum() > 500
        assert np.mean(np.abs(pts[low][:, 2]) < 0.015) > 0.95  # floor (and the 1.2 cm rug)


@pytest.mark.blender
def test_depth_reprojects_across_shots_to_the_same_colour(tiny):
    """Stage pixels of a wide frame, lifted with their depth and projected into the close camera, land on
    pixels of the same colour and depth."""
    _, _, clip = tiny
    src, dst = 1, 4
    assert clip.shot_ids[src] != clip.shot_ids[dst]
    ok = (clip.masks[src] == 0) & np.isfinite(clip.depth[src])
    depth = np.where(ok, clip.depth[src], 0.0).astype(np.float64)
    pts = backproject_depth(depth, clip.K[src], clip.viewmats[src])[ok]
    colors = clip.frames[src][ok].astype(float)
    uv, z = project_points(pts, clip.viewmats[dst], clip.K[dst])
    H, W = clip.depth.shape[1:]
    c, r = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
    inside = (z > 0) & (c >= 0) & (c < W) & (r >= 0) & (r < H)
    c, r, z, colors = c[inside], r[inside], z[inside], colors[inside]
    seen = (np.abs(clip.depth[dst][r, c] - z) < 0.02 * z) & (clip.masks[dst][r, c] == 0)
    assert seen.sum() > 300
    diff = np.abs(clip.frames[dst][r[seen], c[seen]].astype(float) - colors[seen]).mean(-1)
    assert np.median(diff) < 12.0


@pytest.mark.blender
def test_masks_match_the_posed_bodies(tiny, model):
    """Body vertices that the depth map says are visible fall on their own actor's mask (give or take a
    pixel; vertices touching the floor or the couch are left out, their depth matches either surface)."""
    _, _, clip = tiny
    s = clip.smpl
    H, W = clip.depth.shape[1:]
    checked = 0
    for a in range(2):
        out = model.forward(torch.as_tensor(s["pose"][a]), torch.as_tensor(s["betas"][a][None]),
                            torch.as_tensor(np.repeat(s["scale"][a], 8)), torch.as_tensor(s["transl"][a]))
        verts = out.vertices.numpy()
        for f in np.flatnonzero(s["present"][a]):
            uv, z = project_points(verts[f], clip.viewmats[f], clip.K[f])
            c, r = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
            inside = (z > 0) & (c >= 0) & (c < W) & (r >= 0) & (r < H) & (verts[f][:, 2] > 0.05)
            if clip.smpl["joints"][a, f, 0, 2] < 0.8:  # sitting down: thighs and buttocks touch the couch
                inside &= verts[f][:, 2] > 0.8
            c, r, z = c[inside], r[inside], z[inside]
            front = np.abs(clip.depth[f][r, c] - z) < 0.01
            if front.sum() < 20:
                continue
            mask = ndimage.binary_dilation(clip.masks[f] == a + 1)
            assert np.mean(mask[r[front], c[front]]) > 0.97, (a, f)
            checked += 1
    assert checked >= 8


@pytest.mark.blender
def test_joints_fall_inside_the_mask_when_the_actor_is_fully_visible(tiny):
    _, _, clip = tiny
    checked = 0
    for a in range(2):
        for f in range(clip.frame_count):
            if not (clip.smpl["present"][a, f] and clip.in_frame_fraction[a, f] == 1.0
                    and clip.occluded_fraction[a, f] < 0.05):
                continue
            mask = ndimage.binary_dilation(clip.masks[f] == a + 1, iterations=2)
            j = np.floor(clip.joints2d[a, f]).astype(int)
            assert clip.joint_in_frame[a, f].all()
            assert np.mean(mask[j[:, 1], j[:, 0]]) >= 0.9, (a, f)
            checked += 1
    assert checked >= 4
    assert not (clip.joint_visible & ~clip.joint_in_frame).any()


@pytest.mark.blender
def test_masks_are_empty_where_an_actor_is_absent(tiny):
    _, _, clip = tiny
    for a in range(2):
        for f in range(clip.frame_count):
            pixels = int((clip.masks[f] == a + 1).sum())
            absent = not clip.smpl["present"][a, f] or clip.in_frame_fraction[a, f] == 0.0
            if absent:
                assert pixels == 0, (a, f)
                assert not clip.joint_visible[a, f].any()
            elif clip.in_frame_fraction[a, f] > 0.5 and clip.occluded_fraction[a, f] < 0.5:
                assert pixels > 20, (a, f)
    # bob is on stage but out of the close shot's frame, then off stage.
    assert clip.smpl["present"][1, 3:5].all() and (clip.in_frame_fraction[1, 3:5] == 0).all()
    assert not clip.smpl["present"][1, 5:].any()


@pytest.mark.blender
def test_stage_mesh_is_the_room_in_metres(tiny):
    import trimesh

    spec, _, clip = tiny
    mesh = trimesh.load(clip.stage_mesh_path, process=False)
    lo, hi = mesh.bounds
    st = spec.stage
    assert lo[2] == pytest.approx(-0.02) and hi[2] == pytest.approx(st.height)
    assert hi[0] == pytest.approx(st.width / 2 + 0.1) and hi[1] == pytest.approx(st.depth / 2 + 0.1)
    assert len(mesh.faces) > 1000


@pytest.mark.blender
def test_cli_reuses_the_clip_and_reports_bad_specs(tiny, tmp_path, capsys):
    spec, path, _ = tiny
    p = tmp_path / "tiny.json"
    p.write_text(json.dumps(spec.to_dict()))
    assert synth_main(["--spec", str(p), "--out", str(path)]) == 0
    assert str(path) in capsys.readouterr().out
    d = spec.to_dict()
    d["actors"][0]["motion"][0]["type"] = "jog"
    p.write_text(json.dumps(d))
    assert synth_main(["--spec", str(p)]) == 2
    assert "spec.actors[0].motion[0].type: unknown motion 'jog'" in capsys.readouterr().err
    assert synth_main(["--spec", str(p.with_name("missing.json"))]) == 2
    with pytest.raises(SystemExit):
        synth_main(["--size", "big"])


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SHOWMAKER_CACHE", str(tmp_path))
    assert cache_root() == tmp_path / "synth"


@pytest.mark.blender
def test_cache_key_is_stable_and_follows_the_spec(model):
    pytest.importorskip("bpy")
    spec = default_spec()
    key = clip_key(spec, model)
    assert len(key) == 16 and key == clip_key(default_spec(), model)
    assert clip_key(spec.with_size(160, 120), model) != key
    d = spec.to_dict()
    d["seed"] += 1
    assert clip_key(parse_spec(d), model) != key
