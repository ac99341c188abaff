"""QC contact sheets (`showmaker qc`): a hand-built project of tiny frames, every stage optional."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from showmaker import qc
from showmaker import qc_draw as qd
from showmaker.atomic import atomic_save_npz
from showmaker.estimate.people import PeopleTracks
from showmaker.geometry import fov_to_K, look_at_viewmat
from showmaker.project import Project

W, H, F = 64, 48, 8
GREY = 100
SHOT_IDS = np.array([0, 0, 0, 0, 0, 1, 1, 1])
UNREGISTERED = 6
# Instance 1 (track 0) fills x 4..27, y 8..39 in every frame; its keypoints (upper part) and SMPL joints
# (lower part) stay in x >= 19, so pixel (8, 20) shows the plain tint. Instance 2 (track 1) fills x 40..59,
# y 10..41, in frames 5-7 only.
BOX1 = (4, 8, 28, 40)
BOX2 = (40, 10, 60, 42)
CLEAN1 = (8, 20)        # inside instance 1, away from every overlay
CLEAN_BG = (34, 4)      # background, away from every overlay


def read_meta(path):
    with Image.open(path) as im:
        return json.loads(im.text[qc.META_KEY]), np.asarray(im.convert("RGB"))


def _keypoints(box, f):
    """33 mediapipe-like landmarks in the upper right of ``box`` (x >= box.x0 + 15)."""
    x0, y0, x1, y1 = box
    rng = np.random.default_rng(f)
    kp = np.zeros((33, 3))
    kp[:, 0] = rng.uniform(x0 + 15, x1 - 1, 33)
    kp[:, 1] = rng.uniform(y0 + 1, y0 + 14, 33)
    kp[:, 2] = 0.9
    kp[30:, 2] = 0.2  # a few weak ones (hollow)
    return kp


def make_project(root, stages=("ingest", "shots", "masks", "people", "cameras", "level", "smpl_init"),
                 ground_truth=None):
    """A fake project: 8 grey 64x48 frames, 2 shots (cut at 5), 2 people, cameras (frame 6 unregistered)."""
    inputs = {}
    if ground_truth is not None:
        gt_dir = root.parent / (root.name + "_gt")
        gt_dir.mkdir()
        (gt_dir / "meta.json").write_text("{}")
        inputs["ground_truth"] = gt_dir
    Project.create(root, inputs)
    st = root / "stages"
    masks = np.zeros((F, H, W), np.uint8)
    masks[:, BOX1[1]:BOX1[3], BOX1[0]:BOX1[2]] = 1
    masks[5:, BOX2[1]:BOX2[3], BOX2[0]:BOX2[2]] = 2
    if "ingest" in stages:
        d = st / "ingest" / "frames"
        d.mkdir(parents=True)
        frames = []
        for f in range(F):
            Image.fromarray(np.full((H, W, 3), GREY, np.uint8)).save(d / f"{f:06d}.png")
            frames.append({"file": f"{f:06d}.png", "index": f, "time": f / 24.0})
        (d / "frames.json").write_text(json.dumps({"format_version": 1, "complete": True, "error": None,
                                                   "width": W, "height": H, "fps": 24.0, "frames": frames}))
    if "shots" in stages:
        (st / "shots").mkdir(parents=True)
        atomic_save_npz(st / "shots" / "shots.npz", shot_ids=SHOT_IDS, cuts=np.array([5]))
    if "masks" in stages or "people" in stages:
        (st / "masks").mkdir(parents=True)
    if "masks" in stages:
        atomic_save_npz(st / "masks" / "masks.npz", instances=masks)
    if "people" in stages:
        N = 2
        kp = np.zeros((N, F, 33, 3))
        present = np.zeros((N, F), bool)
        boxes = np.zeros((N, F, 4))
        for f in range(F):
            kp[0, f], present[0, f], boxes[0, f] = _keypoints(BOX1, f), True, BOX1
            if f >= 5:
                kp[1, f], present[1, f], boxes[1, f] = _keypoints(BOX2, 10 + f), True, BOX2
        tracks = PeopleTracks(
            masks=masks, keypoints2d=kp, world_landmarks=np.zeros_like(kp), boxes=boxes, present=present,
            scores=present * 0.9, shot_of_track=np.array([0, 1]), face_found=present.copy(),
            face_boxes=np.where(present[..., None], np.array([5.0, 30, 12, 36]), 0),
            face_mesh_found=np.zeros((N, F), bool), face_landmarks=np.zeros((N, F, 468, 3)))
        atomic_save_npz(st / "masks" / "people.npz", **tracks.to_arrays())
    K = fov_to_K(60.0, W, H)
    vms = np.stack([look_at_viewmat([4 * np.cos(a), 4 * np.sin(a) - 6, 1.6], [0, 0, 1.0])
                    for a in np.linspace(1.2, 1.9, F)])
    reg = np.ones(F, bool)
    reg[UNREGISTERED] = False
    vms_stored = vms.copy()
    vms_stored[UNREGISTERED] = np.nan
    rng = np.random.default_rng(0)
    pts = np.concatenate([np.c_[rng.uniform(-3, 3, (400, 2)), np.zeros(400)],          # floor
                          np.c_[rng.uniform(-3, 3, 200), np.full(200, 3.0), rng.uniform(0, 2.5, 200)]])  # wall
    cols = np.concatenate([np.tile([0.8, 0.5, 0.2], (400, 1)), np.tile([0.6, 0.8, 0.9], (200, 1))])
    if "cameras" in stages:
        (st / "cameras").mkdir(parents=True)
        atomic_save_npz(st / "cameras" / "cameras.npz", Ks=np.repeat(K[None], F, 0), viewmats=vms_stored,
                        registered=reg)
        atomic_save_npz(st / "cameras" / "points.npz", points=pts, colors=cols)
    if "level" in stages:
        (st / "level").mkdir(parents=True)
        atomic_save_npz(st / "level" / "scene.npz", Ks=np.repeat(K[None], F, 0), viewmats=vms_stored,
                        points=pts, colors=cols, T_level=np.eye(4), registered=reg)
    if "smpl_init" in stages:
        # camera-frame joints at 3 m whose projections land in the lower right part of each person's box
        Kinv = np.linalg.inv(K)
        jc = np.zeros((2, F, 24, 3))
        rng = np.random.default_rng(1)
        for n, box in enumerate((BOX1, BOX2)):
            uv = np.c_[rng.uniform(box[0] + 15, box[2] - 1, 24), rng.uniform(box[1] + 18, box[3] - 1, 24),
                       np.ones(24)]
            jc[n] = 3.0 * (uv @ Kinv.T)
        valid = np.zeros((2, F), bool)
        valid[0] = True
        valid[1, 5:] = True
        (st / "smpl_init").mkdir(parents=True)
        atomic_save_npz(st / "smpl_init" / "smpl_init.npz", pose=np.zeros((2, F, 24, 3)), betas=np.zeros((2, 10)),
                        transl_cam=jc[:, :, 0], valid=valid, joints_cam=jc, residual=np.full((2, F), 1.5))
    return SimpleNamespace(root=root, masks=masks, vms=vms, K=K, reg=reg)


def tile_pixel(img, box, xy, tw):
    """Sheet pixel showing image pixel ``xy`` (integer pixel) of a tile drawn at ``box``."""
    s = tw / W
    return img[int(box[1] + (xy[1] + 0.5) * s), int(box[0] + (xy[0] + 0.5) * s)].astype(int)


def expected_tint(k):
    return np.round(GREY * (1 - 0.45) + np.asarray(qd.instance_color(k)) * 0.45).astype(int)


def test_full_project_sheets(tmp_path):
    p = make_project(tmp_path / "proj")
    paths = qc.write_contact_sheets(p.root, frames_per_shot=3)
    assert [x.name for x in paths] == ["shot_000.png", "shot_001.png", "cameras_top.png"]
    assert all(x.parent == p.root / "qc" and x.is_file() for x in paths)
    assert not list((p.root / "qc").glob(".*.tmp"))

    m0, img0 = read_meta(paths[0])
    m1, img1 = read_meta(paths[1])
    # shot 0 (frames 0-4): 3 evenly sampled frames; shot 1 (5-7): the previous shot's last frame + 5, 6, 7
    assert [t["frame"] for t in m0["tiles"]] == [0, 2, 4]
    assert [t["frame"] for t in m1["tiles"]] == [4, 5, 6, 7]
    assert {t["panel"] for t in m0["tiles"] + m1["tiles"]} == {"estimate"}
    tw, th = m0["tile_size"]
    assert (tw, th) == (256, 192)  # tiny frames are enlarged (4x) so captions fit
    for meta, img in ((m0, img0), (m1, img1)):
        assert img.shape[1] <= 1600
        for t in meta["tiles"]:
            x0, y0, x1, y1 = t["box"]
            assert (x1 - x0, y1 - y0) == (tw, th) and y1 <= img.shape[0] and x1 <= img.shape[1]
    roles = {t["frame"]: t["roles"] for t in m1["tiles"]}
    assert roles[4] == ["last of shot 0"] and roles[5] == ["CUT: first of shot"]
    cap = {t["frame"]: t["caption"] for t in m1["tiles"]}
    assert "NO CAMERA" in cap[UNREGISTERED] and "NO CAMERA" not in cap[5]
    assert "frame 5" in cap[5] and "t=0.208s" in cap[5] and "shot 1" in cap[5]
    assert "kp #0 #1" in cap[5] and "smpl #0 #1" in cap[5] and "ids 1 2" in cap[5]
    assert "frames 5-7" in m1["info"] and "unregistered: 6" in m1["info"]
    assert m0["missing"] == [] and m1["missing"] == []

    # masks tinted where they are, background untouched
    t5 = next(t for t in m1["tiles"] if t["frame"] == 5)
    assert np.abs(tile_pixel(img1, t5["box"], CLEAN1, tw) - expected_tint(1)).max() <= 2
    assert np.abs(tile_pixel(img1, t5["box"], (44, 38), tw) - expected_tint(2)).max() <= 2
    assert np.abs(tile_pixel(img1, t5["box"], CLEAN_BG, tw) - GREY).max() <= 1
    t4 = next(t for t in m1["tiles"] if t["frame"] == 4)  # instance 2 appears only from frame 5
    assert np.abs(tile_pixel(img1, t4["box"], (44, 38), tw) - GREY).max() <= 1
    # keypoints are dots and bones of the track's own colour (the tint is only a blend of it) in their region;
    # SMPL bones are drawn in the lightened colour
    x0, y0, x1, y1 = t5["box"]
    s = tw // W
    kp_region = img1[y0 + 9 * s:y0 + 23 * s, x0 + 19 * s:x0 + 27 * s].reshape(-1, 3)
    assert (kp_region == np.array(qd.instance_color(1))).all(1).sum() > 50
    clean_region = img1[y0 + 14 * s:y0 + 23 * s, x0 + 5 * s:x0 + 9 * s].reshape(-1, 3)
    assert not (clean_region == np.array(qd.instance_color(1))).all(1).any()
    tile = img1[y0:y1, x0:x1].reshape(-1, 3)
    assert (tile == np.array(qd.lighten(qd.instance_color(1), 0.45))).all(1).sum() > 20

    mt, imgt = read_meta(paths[2])
    assert mt["kind"] == "cameras_top" and "levelled" in mt["source"]
    assert mt["unregistered"] == [UNREGISTERED] and len(mt["registered"]) == F - 1
    assert any("UNREGISTERED frames (1): 6" in t for t in mt["text"])
    assert not mt["gt_aligned"]
    # the first camera's centre is drawn (a dot of shot 0's colour) where world_to_px puts it
    c = -p.vms[0, :3, :3].T @ p.vms[0, :3, 3]
    w2p = mt["world_to_px"]
    mx, my = mt["map_box"][:2]
    px = mx + (c[0] - w2p["lo"][0]) * w2p["scale"]
    py = my + (w2p["hi"][1] - c[1]) * w2p["scale"]
    near = imgt[int(py) - 2:int(py) + 3, int(px) - 2:int(px) + 3].reshape(-1, 3)
    assert (near == np.array(qd.shot_color(0))).all(1).any()


def test_missing_stages_become_captions(tmp_path):
    # only frames and masks: no shots, people, cameras, level, SMPL; a corrupt smpl_init file
    p = make_project(tmp_path / "proj", stages=("ingest", "masks"))
    (p.root / "stages" / "smpl_init").mkdir()
    (p.root / "stages" / "smpl_init" / "smpl_init.npz").write_bytes(b"not an npz")
    paths = qc.write_contact_sheets(p.root, out_dir=tmp_path / "out", frames_per_shot=4)
    assert [x.name for x in paths] == ["shot_000.png", "cameras_top.png"]
    m, img = read_meta(paths[0])
    assert set(m["missing"]) == {"shots", "cameras", "level", "smpl_init"}
    assert "shots: MISSING (not run; one shot assumed)" in m["status"]
    assert any("smpl_init/smpl_init.npz: unreadable" in n for n in m["notes"])
    assert [t["frame"] for t in m["tiles"]] == [0, 2, 5, 7]
    assert np.abs(tile_pixel(img, m["tiles"][0]["box"], CLEAN1, m["tile_size"][0]) - expected_tint(1)).max() <= 2
    mt, _ = read_meta(paths[1])
    assert mt["n_frames"] == 0 and "MISSING" in mt["source"]

    # no frames either (cameras only): grey placeholders, cameras from the unlevelled SfM frame
    p2 = make_project(tmp_path / "proj2", stages=("cameras",))
    paths = qc.write_contact_sheets(p2.root, frames_per_shot=2)
    m, _ = read_meta(paths[0])
    assert "ingest" in m["missing"] and "no frame image" in m["tiles"][0]["caption"]
    assert [t["frame"] for t in m["tiles"]] == [0, 7]
    mt, _ = read_meta(paths[-1])
    assert "NOT levelled" in mt["source"] and mt["unregistered"] == [UNREGISTERED]

    # an empty directory that is not a project still gets sheets that say so
    empty = tmp_path / "empty"
    empty.mkdir()
    paths = qc.write_contact_sheets(empty)
    assert [x.name for x in paths] == ["cameras_top.png"]
    assert any("manifest" in n for n in read_meta(paths[0])[0]["notes"])


def fake_clip(p, gt_cut=3):
    """A ground-truth clip like load_clip's: the estimate's cameras moved by a similarity, GT cut at 3."""
    s, t = 2.0, np.array([1.0, -2.0, 0.5])
    a = 0.3
    R = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    # x_gt = s R x_est + t  ->  viewmat_gt = [R_c R^T, s t_c - R_c R^T t] (scaled translation)
    gvm = np.zeros_like(p.vms)
    for f, v in enumerate(p.vms):
        Rc, tc = v[:3, :3], v[:3, 3]
        gvm[f] = np.eye(4)
        gvm[f, :3, :3] = Rc @ R.T
        gvm[f, :3, 3] = s * tc - Rc @ R.T @ t
    joints = np.zeros((2, F, 24, 2))
    joints[0] = np.array([10.0, 20.0]) + np.arange(24)[:, None] * [0.5, 0.7]
    inf = np.zeros((2, F, 24), bool)
    inf[0] = True
    vis = inf.copy()
    vis[0, :, :5] = False
    shot_ids = np.array([0, 0, 0] + [1] * (F - 3))
    return SimpleNamespace(frames=[np.full((H, W, 3), 150, np.uint8)] * F, masks=p.masks, joints2d=joints,
                           joint_in_frame=inf, joint_visible=vis, K=np.repeat(p.K[None], F, 0), viewmats=gvm,
                           shot_ids=shot_ids, cuts=[gt_cut], actor_names=["alice", "bob"], fps=24.0,
                           frame_count=F)


def test_ground_truth_beside_estimate(tmp_path, monkeypatch):
    p = make_project(tmp_path / "proj", ground_truth=True)
    clip = fake_clip(p)
    monkeypatch.setattr(qc, "_load_ground_truth", lambda project: clip)
    paths = qc.write_contact_sheets(p.root, frames_per_shot=2, max_width=1200)
    m0, img0 = read_meta(paths[0])
    # shot 0 (0-4): 0 and 4, plus both sides of the ground-truth cut at 3 that the estimate missed
    est = [t for t in m0["tiles"] if t["panel"] == "estimate"]
    gt = [t for t in m0["tiles"] if t["panel"] == "ground_truth"]
    assert [t["frame"] for t in est] == [0, 2, 3, 4] == [t["frame"] for t in gt]
    assert [t["gt_frame"] for t in gt] == [0, 2, 3, 4]
    assert {t["frame"]: t["roles"] for t in est}[3] == ["GT cut"]
    assert "GT CUT INSIDE THIS SHOT at frame(s) 3" in m0["info"]
    for e, g in zip(est, gt):  # the ground truth tile sits right beside its estimate tile
        assert g["box"][1] == e["box"][1] and g["box"][0] == e["box"][2] + 3
        assert g["box"][2] <= img0.shape[1] <= 1200
    g3 = next(t for t in gt if t["frame"] == 3)
    assert "GT CUT" in g3["caption"] and "alice" in g3["caption"]
    x0, y0, x1, y1 = g3["box"]
    assert tuple(img0[(y0 + y1) // 2, x0]) == qd.GT_CUT_COLOR      # the cut's border
    tw = m0["tile_size"][0]
    gt_tint = np.round(150 * 0.55 + np.asarray(qd.instance_color(1)) * 0.45)
    assert np.abs(tile_pixel(img0, g3["box"], CLEAN1, tw) - gt_tint).max() <= 2
    m1, _ = read_meta(paths[1])
    assert "no GT cut at frame 5 (false cut?)" in m1["info"]

    mt, _ = read_meta(paths[-1])
    assert mt["gt_aligned"] and mt["gt_center_error_mean"] < 1e-6


def test_cli_and_stale_sheets(tmp_path, capsys):
    p = make_project(tmp_path / "proj", stages=("ingest", "shots", "masks"))
    out = tmp_path / "qc out"
    assert qc.qc_main([str(p.root), "--out", str(out), "--frames-per-shot", "2"]) == 0
    printed = capsys.readouterr().out.split("\n")
    assert printed[:3] == [str(out / "shot_000.png"), str(out / "shot_001.png"), str(out / "cameras_top.png")]
    # one shot now: the old shot_001.png goes, a PNG that is not ours stays
    Image.new("RGB", (4, 4)).save(out / "shot_009.png")
    atomic_save_npz(p.root / "stages" / "shots" / "shots.npz", shot_ids=np.zeros(F, int), cuts=np.zeros(0, int))
    assert qc.qc_main([str(p.root), "--out", str(out)]) == 0
    assert sorted(x.name for x in out.iterdir()) == ["cameras_top.png", "shot_000.png", "shot_009.png"]
    assert qc.qc_main([str(tmp_path / "nope")]) == 1
    assert "no such project directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        qc.qc_main([str(p.root), "--frames-per-shot", "0"])


def test_real_ground_truth_clip(tmp_path, default_clip):
    """Through the real load_clip: a project with only masks and (similarity-moved) cameras of a cached clip."""
    from showmaker.synth import load_clip

    path = default_clip.path
    clip = load_clip(path)
    root = tmp_path / "proj"
    Project.create(root, {"ground_truth": path})
    n = min(clip.frame_count, 40)
    (root / "stages" / "masks").mkdir(parents=True)
    atomic_save_npz(root / "stages" / "masks" / "masks.npz", instances=np.asarray(clip.masks[:n], np.uint8))
    vm = np.asarray(clip.viewmats[:n], np.float64).copy()
    vm[:, :3, 3] *= 0.5  # the estimate's world is the truth scaled by 1/2
    (root / "stages" / "cameras").mkdir()
    atomic_save_npz(root / "stages" / "cameras" / "cameras.npz", Ks=np.asarray(clip.K[:n]), viewmats=vm)
    paths = qc.write_contact_sheets(root, frames_per_shot=2)
    shots = sorted(set(int(s) for s in clip.shot_ids[:n]))
    assert [p.name for p in paths] == [f"shot_{s:03d}.png" for s in shots] + ["cameras_top.png"]
    m, _ = read_meta(paths[0])
    est = [t for t in m["tiles"] if t["panel"] == "estimate"]
    gt = [t for t in m["tiles"] if t["panel"] == "ground_truth"]
    assert [t["frame"] for t in est] == [t["gt_frame"] for t in gt]
    assert "shots: MISSING (not run; using the ground truth's shots)" in m["status"]
    assert any(clip.actor_names[0] in t["caption"] for t in gt)
    mt, _ = read_meta(paths[-1])
    assert mt["gt_aligned"] and mt["gt_center_error_mean"] < 1e-6
