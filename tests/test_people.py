"""People estimator: 33 -> 24 joint mapping, mask overlap resolution, depth order, tracking (crossing,
gaps, appearance), metrics, and the mediapipe estimator end to end on painted people.

The end-to-end tests paint simple frontal people (skin-coloured head with eyes and mouth, shirt, trousers,
limbs) with known joints and instance masks; BlazePose detects them as people, so the figures are a real
check of detection, masks, keypoints and tracking rather than an assertion on nothing.
"""
import numpy as np
import pytest

from showmaker.body.joints import SMPL_JOINT_NAMES
from showmaker.estimate.people_metrics import (
    count_id_switches,
    mask_iou,
    match_tracks_to_actors,
    pck,
    score_people,
)
from showmaker.estimate.people_track import (
    LEG_PAIRS,
    ShotTracker,
    StitchConfig,
    TrackerConfig,
    box_iou,
    consistent_left_right,
    hellinger,
    stitch_tracklets,
    swap_limbs,
)

cv2 = pytest.importorskip("cv2")
pytest.importorskip("mediapipe")

from showmaker.estimate.people import (  # noqa: E402  (after the optional-dependency checks)
    MP_LANDMARK_NAMES,
    SMPL_FROM_MP,
    PeopleConfig,
    PeopleTracks,
    _tiles,
    depth_order_key,
    estimate_people,
    mediapipe_to_smpl24,
    resolve_overlaps,
    skeleton_gate,
)

SCORED = np.array(sorted(SMPL_FROM_MP))


# ---------------------------------------------------------------------------------------------------------
# Painted people with ground truth
# ---------------------------------------------------------------------------------------------------------
def paint_person(H, W, cx, top, h, shirt, trousers, skin=(190, 150, 120), hair=(40, 30, 20), arms=0.0, stride=0.0):
    """A frontal standing figure ``h`` pixels tall, head top at row ``top``, centred on column ``cx``, on an
    empty layer. Returns (rgb [H, W, 3], mask [H, W] bool, SMPL joints [24, 2], visible [24]); the 12 joints
    with a mediapipe counterpart are drawn where the figure's joints are (pixel centres at +0.5)."""
    img = np.zeros((H, W, 3), np.uint8)
    m = np.zeros((H, W), np.uint8)
    s = h / 8.0
    sub = 16  # cv2 sub-pixel drawing: coordinates in 1/16 pixel; pixel centres at +0.5

    def P(p):
        return (int(round((p[0] - 0.5) * sub)), int(round((p[1] - 0.5) * sub)))

    def both(draw, col):
        draw(img, col)
        draw(m, 1)

    def line(p, q, col, t):
        both(lambda im, c: cv2.line(im, P(p), P(q), c, max(1, int(t)), cv2.LINE_AA, 4), col)

    def ellipse(p, ax, a0, a1, col):
        both(lambda im, c: cv2.ellipse(im, P(p), (int(ax[0] * sub), int(ax[1] * sub)), 0, a0, a1, c, -1,
                                       cv2.LINE_AA, 4), col)

    head = (cx, top + 0.5 * s)
    sh_y, hip_y = top + 1.5 * s, top + 4.0 * s
    sw = stride * s
    j = {
        "left_shoulder": (cx + 1.0 * s, sh_y), "right_shoulder": (cx - 1.0 * s, sh_y),
        "left_hip": (cx + 0.5 * s, hip_y), "right_hip": (cx - 0.5 * s, hip_y),
        "left_knee": (cx + 0.55 * s + 0.3 * sw, top + 6.0 * s), "right_knee": (cx - 0.55 * s - 0.3 * sw, top + 6.0 * s),
        "left_ankle": (cx + 0.6 * s + 0.6 * sw, top + 7.8 * s - 0.1 * abs(sw)),
        "right_ankle": (cx - 0.6 * s - 0.6 * sw, top + 7.8 * s - 0.1 * abs(sw)),
    }
    for side, sign in (("left", 1), ("right", -1)):
        sh = j[f"{side}_shoulder"]
        el = (sh[0] + sign * (0.4 + 0.8 * arms) * s, sh_y + (1.4 - 1.6 * arms) * s)
        j[f"{side}_elbow"] = el
        j[f"{side}_wrist"] = (el[0] + sign * (0.2 + 0.5 * arms) * s, el[1] + (1.3 - 2.4 * arms) * s)
    for side in ("left", "right"):
        line(j[f"{side}_hip"], j[f"{side}_knee"], trousers, 0.6 * s)
        line(j[f"{side}_knee"], j[f"{side}_ankle"], trousers, 0.6 * s)
        a = j[f"{side}_ankle"]
        ellipse((a[0], a[1] + 0.1 * s), (0.35 * s, 0.15 * s), 0, 360, (30, 30, 30))
    corners = [(j["left_shoulder"][0] + 0.1 * s, sh_y - 0.1 * s), (j["right_shoulder"][0] - 0.1 * s, sh_y - 0.1 * s),
               (j["right_hip"][0] - 0.2 * s, hip_y + 0.3 * s), (j["left_hip"][0] + 0.2 * s, hip_y + 0.3 * s)]
    torso = np.array([P(c) for c in corners], np.int32)
    both(lambda im, c: cv2.fillConvexPoly(im, torso, c, cv2.LINE_AA, 4), shirt)
    for side in ("left", "right"):
        line(j[f"{side}_shoulder"], j[f"{side}_elbow"], shirt, 0.45 * s)
        line(j[f"{side}_elbow"], j[f"{side}_wrist"], skin, 0.35 * s)
        ellipse(j[f"{side}_wrist"], (0.25 * s, 0.25 * s), 0, 360, skin)
    line((cx, top + 1.1 * s), (cx, sh_y), skin, 0.4 * s)
    ellipse(head, (0.38 * s, 0.5 * s), 0, 360, skin)
    ellipse((cx, head[1] - 0.2 * s), (0.4 * s, 0.35 * s), 180, 360, hair)
    for dx in (-0.15, 0.15):
        eye = P((cx + dx * s, head[1] - 0.02 * s))
        cv2.circle(img, eye, int(max(1.0, 0.06 * s) * sub), (30, 30, 30), -1, cv2.LINE_AA, 4)
    cv2.line(img, P((cx - 0.1 * s, head[1] + 0.25 * s)), P((cx + 0.1 * s, head[1] + 0.25 * s)), (120, 50, 50),
             max(1, int(0.04 * s)), cv2.LINE_AA, 4)
    joints = np.zeros((24, 2))
    visible = np.zeros(24, bool)
    for name, p in j.items():
        joints[SMPL_JOINT_NAMES.index(name)] = p
        visible[SMPL_JOINT_NAMES.index(name)] = True
    return img, m > 0, joints, visible


def painted_clip(F, H=360, W=640, seed=0, third=True):
    """Two people walking past each other (they cross mid-clip) and, with ``third``, a smaller one standing
    further back, partly hidden. Returns frames [F, H, W, 3], masks [F, H, W] (a + 1 actor a), joints
    [A, F, 24, 2], visible [A, F, 24] (a joint hidden behind a nearer person is not visible)."""
    rng = np.random.default_rng(seed)
    bg = np.zeros((H, W, 3), np.uint8)
    bg[:] = (200, 195, 185)
    bg[int(0.62 * H):] = (140, 110, 80)
    for _ in range(4):
        x, y = int(rng.integers(0, W - 60)), int(rng.integers(0, int(0.6 * H)))
        cv2.rectangle(bg, (x, y), (x + int(rng.integers(30, 120)), y + int(rng.integers(20, 80))),
                      tuple(int(c) for c in rng.integers(60, 220, 3)), -1)
    A = 3 if third else 2
    frames, masks = np.zeros((F, H, W, 3), np.uint8), np.zeros((F, H, W), np.uint8)
    joints, visible = np.zeros((A, F, 24, 2)), np.zeros((A, F, 24), bool)
    for f in range(F):
        t = f / max(F - 1, 1)
        specs = [
            dict(cx=0.19 * W + 0.59 * W * t, top=0.11 * H, h=0.83 * H, shirt=(40, 60, 170), trousers=(50, 50, 60),
                 stride=0.5 * np.sin(1.3 * f), arms=0.0),
            dict(cx=0.81 * W - 0.59 * W * t, top=0.19 * H, h=0.69 * H, shirt=(180, 40, 40), trousers=(70, 60, 40),
                 stride=0.5 * np.sin(1.3 * f + 1), arms=0.3),
            dict(cx=0.875 * W, top=0.33 * H, h=0.5 * H, shirt=(40, 150, 60), trousers=(40, 40, 40), stride=0.0,
                 arms=0.6 * np.sin(0.5 * f) ** 2),
        ][:A]
        layers = []
        for a, sp in enumerate(specs):
            img, m, jn, v = paint_person(H, W, sp["cx"], sp["top"], sp["h"], sp["shirt"], sp["trousers"],
                                         arms=sp["arms"], stride=sp["stride"])
            layers.append((sp["top"] + sp["h"], a, img, m))
            joints[a, f], visible[a, f] = jn, v
        frame = bg.copy()
        for _, a, img, m in sorted(layers, key=lambda x: x[0]):  # far (feet higher) first
            frame[m] = img[m]
            masks[f][m] = a + 1
        for a in range(A):
            ij = np.clip(np.floor(joints[a, f]).astype(int), 0, [W - 1, H - 1])
            visible[a, f] &= masks[f][ij[:, 1], ij[:, 0]] == a + 1
        frames[f] = frame
    return frames, masks, joints, visible


# ---------------------------------------------------------------------------------------------------------
# Joint mapping
# ---------------------------------------------------------------------------------------------------------
def test_smpl_mapping_pairs_same_names():
    assert len(SMPL_FROM_MP) == 12
    for j, m in SMPL_FROM_MP.items():
        assert SMPL_JOINT_NAMES[j] == MP_LANDMARK_NAMES[m]
    assert len(MP_LANDMARK_NAMES) == 33


def test_mediapipe_to_smpl24():
    kp = np.random.default_rng(0).uniform(0, 100, (2, 5, 33, 3))
    out = mediapipe_to_smpl24(kp)
    assert out.shape == (2, 5, 24, 3)
    for j, m in SMPL_FROM_MP.items():
        np.testing.assert_array_equal(out[..., j, :], kp[..., m, :])
    unmapped = [j for j in range(24) if j not in SMPL_FROM_MP]
    assert np.all(out[..., unmapped, :] == 0)
    approx = mediapipe_to_smpl24(kp, approximate=True)
    np.testing.assert_allclose(approx[..., 0, :2], 0.5 * (kp[..., 23, :2] + kp[..., 24, :2]))
    np.testing.assert_allclose(approx[..., 0, 2], 0.5 * np.minimum(kp[..., 23, 2], kp[..., 24, 2]))
    np.testing.assert_allclose(approx[..., 15, :2], 0.5 * (kp[..., 7, :2] + kp[..., 8, :2]))
    neck = 0.5 * (0.5 * (kp[..., 11, :2] + kp[..., 12, :2]) + 0.5 * (kp[..., 7, :2] + kp[..., 8, :2]))
    np.testing.assert_allclose(approx[..., 12, :2], neck)
    for j in SMPL_FROM_MP:
        np.testing.assert_array_equal(approx[..., j, :], out[..., j, :])


# ---------------------------------------------------------------------------------------------------------
# Masks: overlap resolution and depth order
# ---------------------------------------------------------------------------------------------------------
def test_resolve_overlaps_nearest_wins():
    H, W = 20, 30
    a = np.zeros((10, 10))
    a[:, :] = 0.9
    b = np.full((10, 10), 0.6)
    b[0, 0] = 0.2  # below threshold: not claimed by b
    ids = resolve_overlaps([a, b], [(0, 0), (5, 5)], [10.0, 20.0], (H, W), threshold=0.5)
    assert ids.dtype == np.uint8 and ids.shape == (H, W)
    assert ids[2, 2] == 1  # only a
    assert ids[7, 7] == 2  # both claim; b is nearer (larger key)
    assert ids[5, 5] == 1  # b's probability 0.2 there: a keeps it
    assert ids[12, 12] == 2 and ids[15, 15] == 0
    # Swap the depth order: a wins the overlap.
    ids = resolve_overlaps([a, b], [(0, 0), (5, 5)], [30.0, 20.0], (H, W))
    assert ids[7, 7] == 1 and ids[12, 12] == 2
    # Equal keys: the higher probability wins.
    ids = resolve_overlaps([a, b], [(0, 0), (5, 5)], [5.0, 5.0], (H, W))
    assert ids[7, 7] == 1
    # Regions partly outside the image are clipped; entirely outside ones ignored.
    ids = resolve_overlaps([np.ones((10, 10)), np.ones((4, 4))], [(-5, 15), (40, 40)], [0.0, 1.0], (H, W))
    assert np.count_nonzero(ids == 1) == 5 * 5 and not np.any(ids == 2)


def test_skeleton_gate_and_tiles():
    kp = _walking_legs(1)[0]
    kp[[0, 7, 8], :2] = [[100, 70], [106, 72], [94, 72]]
    kp[[13, 15], :2] = [[115, 130], [118, 155]]
    kp[[14, 16], :2] = [[85, 130], [82, 155]]
    g = skeleton_gate(kp, (300, 200), (0, 0), radius=0.2)  # torso 60 px: limbs 24 px thick
    assert g.dtype == np.float32 and g.shape == (300, 200)
    for x, y in [(100, 130), (100, 70), (117, 140), (108, 235), (100, 160)]:  # torso, head, arm, leg, pelvis
        assert g[y, x] == 1
    for x, y in [(160, 130), (20, 250), (100, 10)]:  # beside the body, far below-left, above the head
        assert g[y, x] == 0
    shifted = skeleton_gate(kp, (300, 200), (10, 20), radius=0.2)
    assert np.mean(shifted[:-20, :-10] != g[20:, 10:]) < 1e-3  # the same drawing, up to line clipping
    assert _tiles(320, 240) == [(0, 0, 240, 240), (80, 0, 320, 240)]
    assert _tiles(640, 360) == [(0, 0, 360, 360), (140, 0, 500, 360), (280, 0, 640, 360)]
    assert _tiles(240, 320) == [(0, 0, 240, 240), (0, 80, 240, 320)]
    assert _tiles(256, 240) == []


def test_depth_order_key():
    kp = np.zeros((33, 3))
    kp[[11, 12], 1], kp[[23, 24], 1] = 100.0, 150.0
    kp[[11, 12, 23, 24], 2] = 1.0
    box = np.array([0, 80, 50, 300.0])
    assert depth_order_key(kp, box) == pytest.approx(150 + 1.8 * 50)  # feet hidden: estimated from the torso
    kp[27] = (10, 240, 0.9)
    kp[30] = (12, 250, 0.8)
    kp[31] = (12, 280, 0.1)  # not visible
    assert depth_order_key(kp, box) == 250.0
    assert depth_order_key(np.zeros((33, 3)), box) == 300.0


# ---------------------------------------------------------------------------------------------------------
# Tracking
# ---------------------------------------------------------------------------------------------------------
def _box(x, y=0.0, w=60.0, h=150.0):
    return np.array([x, y, x + w, y + h])


def test_tracker_keeps_identities_through_a_crossing():
    """A walks right, B walks left; between frames 3 and 4 they pass each other. Matching the last boxes by
    IoU alone would swap them at frame 4; the constant-velocity prediction keeps them."""
    F = 9
    ax = 20 + 40 * np.arange(F)
    bx = 300 - 40 * np.arange(F)
    a_boxes = [_box(x) for x in ax]
    b_boxes = [_box(x, y=5, h=140) for x in bx]
    naive = box_iou(np.stack([a_boxes[3], b_boxes[3]]), np.stack([a_boxes[4], b_boxes[4]]))
    assert naive[0, 1] > naive[0, 0] and naive[1, 0] > naive[1, 1]  # the naive matching would swap
    tr = ShotTracker()
    ids = np.array([tr.update(f, np.stack([b_boxes[f], a_boxes[f]])) for f in range(F)])  # B listed first
    assert np.all(ids[:, 0] == ids[0, 0]) and np.all(ids[:, 1] == ids[0, 1]) and ids[0, 0] != ids[0, 1]
    assert tr.hits == {0: F, 1: F}


def test_tracker_bridges_short_gaps_only():
    cfg = TrackerConfig(max_gap=2)
    tr = ShotTracker(cfg)
    x = 10.0 + 15 * np.arange(20)
    seen = [0, 1, 2, 3, 6, 7, 11, 12]  # a 2-frame gap (4, 5), then a 3-frame gap (8-10)
    ids = [int(tr.update(f, _box(x[f])[None])[0]) for f in seen]
    assert ids[:6] == [0] * 6
    assert ids[6:] == [1, 1]
    # The prediction coasts at the track's velocity.
    tids, pred = ShotTracker().predicted_boxes(0)
    assert len(tids) == 0 and pred.shape == (0, 4)
    tr = ShotTracker()
    tr.update(0, _box(0)[None])
    tr.update(1, _box(10)[None])
    np.testing.assert_allclose(tr.predicted_boxes(3)[1][0], _box(30))


def test_tracker_appearance_resolves_a_swap():
    """Two people side by side swap places within one frame: box overlap says "stay", colour says "swap"."""
    red, blue = np.zeros(8), np.zeros(8)
    red[0], blue[5] = 1.0, 1.0
    assert hellinger(red, blue) == pytest.approx(1.0) and hellinger(red, red) == pytest.approx(0.0)
    boxes = np.stack([_box(0), _box(30)])
    tr = ShotTracker()
    for f in range(4):
        first = tr.update(f, boxes, appearance=np.stack([red, blue]))
    swapped = tr.update(4, boxes, appearance=np.stack([blue, red]))
    np.testing.assert_array_equal(swapped, first[::-1])
    # Without appearance the same boxes keep their labels (the swap is invisible to geometry).
    tr = ShotTracker()
    for f in range(5):
        ids = tr.update(f, boxes)
    np.testing.assert_array_equal(ids, [0, 1])


def test_tracker_keypoints_gate_and_cost():
    """Keypoints allow a match whose boxes do not overlap (a fast move) and rank candidates by pose."""
    kp = np.zeros((33, 3))
    kp[:, 2] = 1.0
    kp[:, 0] = np.linspace(0, 50, 33)
    kp[:, 1] = np.linspace(0, 140, 33)
    diag = np.hypot(60, 150)
    tr = ShotTracker(TrackerConfig(max_kp_dist=0.5))
    tr.update(0, _box(0)[None], keypoints=kp[None])
    # 61 px to the right: no overlap, but the keypoints are 61 / 161.6 = 0.38 diagonals away: allowed.
    _, cost = tr.cost_matrix(1, _box(61)[None], keypoints=(kp + [61, 0, 0])[None])
    assert cost[0, 0] == pytest.approx(1.0 + 61 / diag)
    # 100 px: 0.62 diagonals, beyond the gate.
    _, cost = tr.cost_matrix(1, _box(100)[None], keypoints=(kp + [100, 0, 0])[None])
    assert cost[0, 0] >= 1e6
    # Same box, two poses: the one matching the track's keypoints is cheaper.
    other = kp.copy()
    other[[13, 14, 15, 16], 1] -= 60  # arms raised
    _, cost = tr.cost_matrix(1, np.stack([_box(0), _box(0)]), keypoints=np.stack([other, kp]))
    assert cost[0, 1] < cost[0, 0]
    assert int(tr.update(1, np.stack([_box(0), _box(0)]), keypoints=np.stack([other, kp]))[1]) == 0


def test_stitch_tracklets_after_an_occlusion():
    red, blue = np.zeros(8), np.zeros(8)
    red[0], blue[5] = 1.0, 1.0
    fr = lambda a, b: np.arange(a, b)  # noqa: E731
    frames = {0: fr(0, 10), 1: fr(20, 30), 2: fr(20, 30), 3: fr(12, 18), 4: fr(5, 15)}
    boxes = {
        0: np.tile(_box(100), (10, 1)),
        1: np.tile(_box(110), (10, 1)),  # red again after a 10-frame occlusion, close by: same person
        2: np.tile(_box(100), (10, 1)),  # blue at the same place: someone else
        3: np.tile(_box(600), (6, 1)),  # red but 500 px away 2 frames later: someone else
        4: np.tile(_box(100), (10, 1)),  # overlaps tracklet 0 in time: someone else
    }
    apps = {0: red * 10, 1: red * 10, 2: blue * 10, 3: red * 6, 4: red * 10}
    root = stitch_tracklets(frames, boxes, apps)
    assert root == {0: 0, 1: 0, 2: 2, 3: 3, 4: 4}
    # Gap too long: no link.
    assert stitch_tracklets(frames, boxes, apps, StitchConfig(max_gap=5))[1] == 1
    # Without appearance the nearer of two candidates wins and each tracklet has one successor.
    boxes = {t: np.tile(_box(x), (10, 1)) for t, x in ((0, 100), (1, 140), (2, 105))}
    root = stitch_tracklets({0: fr(0, 10), 1: fr(20, 30), 2: fr(20, 30)}, boxes)
    assert root == {0: 0, 1: 1, 2: 0}


def _walking_legs(T=12):
    """Smooth landmarks of a person walking right: legs swing, so left and right legs cross."""
    kp = np.zeros((T, 33, 3))
    kp[..., 2] = 1.0
    for t in range(T):
        x0 = 100 + 4 * t
        kp[t, [11, 12], :2] = [[x0 + 10, 100], [x0 - 10, 100]]
        kp[t, [23, 24], :2] = [[x0 + 8, 160], [x0 - 8, 160]]
        swing = 25 * np.sin(0.5 * t)
        for side, (hip, knee, ankle, heel, toe) in ((1, (23, 25, 27, 29, 31)), (-1, (24, 26, 28, 30, 32))):
            kp[t, knee, :2] = [x0 + side * (8 + 0.5 * swing), 210]
            kp[t, ankle, :2] = [x0 + side * (8 + swing), 260]
            kp[t, heel, :2] = kp[t, ankle, :2] + [-4, 4]
            kp[t, toe, :2] = kp[t, ankle, :2] + [8, 6]
    return kp


def test_consistent_left_right_fixes_flicker_only():
    kp = _walking_legs()
    assert not consistent_left_right(kp, LEG_PAIRS).any()
    flick = kp.copy()
    for t in (3, 9):  # frames where the legs are far apart (sin(0.5 t) near +-1)
        flick[t] = swap_limbs(kp[t], LEG_PAIRS)
    np.testing.assert_array_equal(np.flatnonzero(consistent_left_right(flick, LEG_PAIRS)), [3, 9])
    # A labelling flipped for the whole track is kept (nothing says which is right).
    assert not consistent_left_right(swap_limbs(kp, LEG_PAIRS), LEG_PAIRS).any()
    # Low-visibility joints carry no evidence.
    flick[..., 2] = 0.1
    assert not consistent_left_right(flick, LEG_PAIRS).any()
    assert consistent_left_right(np.zeros((0, 33, 3)), LEG_PAIRS).shape == (0,)
    np.testing.assert_array_equal(swap_limbs(swap_limbs(kp, LEG_PAIRS), LEG_PAIRS), kp)


# ---------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------
def test_mask_iou_and_pck():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[:4, :5] = True  # 20 px
    b[2:6, :5] = True  # 20 px, 10 shared
    assert mask_iou(a, b) == pytest.approx(10 / 30)
    assert mask_iou(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0
    gt = np.zeros((5, 2))
    pred = np.array([[5, 0, 0.9], [0, 9.9, 0.9], [15, 0, 0.9], [0, 0, 0.0], [0, 0, 1.0]])
    visible = np.array([True, True, True, True, False])
    # Threshold 0.1 * 100 = 10 px: joints 0 and 1 are right, 2 is too far, 3 is missing, 4 is not counted.
    assert pck(pred, gt, visible, 100.0) == (2, 4)
    pred[1, :2] = np.nan
    assert pck(pred, gt, visible, 100.0) == (1, 4)


def _two_actor_masks():
    """Ground truth: 2 actors, 2 shots of 4 frames; actor 1 absent from the second shot's last frame."""
    gt = np.zeros((8, 20, 40), np.uint8)
    for f in range(8):
        gt[f, 2:18, 2 + f : 10 + f] = 1
        if f != 7:
            gt[f, 5:15, 25 - f : 32 - f] = 2
    return gt, np.array([0] * 4 + [1] * 4)


def test_match_tracks_and_id_switches():
    gt, shots = _two_actor_masks()
    # Shot 0: track 0 = actor 1, track 1 = actor 0. Shot 1: track 2 = actor 0, track 3 = actor 1.
    lut = np.array([[0, 2, 1]] * 4 + [[0, 3, 4]] * 4, np.uint8)
    pred = np.stack([lut[f][gt[f]] for f in range(8)])
    np.testing.assert_array_equal(match_tracks_to_actors(pred, gt, shots, 4, 2), [1, 0, 0, 1])
    assert count_id_switches(pred, gt, shots, 4, 2) == 0  # new ids at a cut are not switches
    # Swap the labels of shot 0 from frame 2 on: both actors switch once.
    swapped = pred.copy()
    for f in (2, 3):
        swapped[f] = np.array([0, 2, 1], np.uint8)[swapped[f]]
    assert count_id_switches(swapped, gt, shots, 4, 2) == 2
    # An unmatched (empty) track is matched to nobody.
    np.testing.assert_array_equal(match_tracks_to_actors(pred, gt, shots, 5, 2), [1, 0, 0, 1, -1])


def test_score_people_perfect_and_degraded():
    gt, shots = _two_actor_masks()
    A, F = 2, 8
    rng = np.random.default_rng(1)
    joints = rng.uniform(0, 20, (A, F, 24, 2))
    visible = np.ones((A, F, 24), bool)
    visible[1, 7] = False
    # Tracks: 0 / 1 in shot 0 (actors 0 / 1), 2 / 3 in shot 1.
    pred_masks = np.where(shots[:, None, None] == 0, gt, np.where(gt > 0, gt + 2, 0)).astype(np.uint8)
    pred_j = np.zeros((4, F, 24, 3))
    for t, (a, s) in enumerate([(0, 0), (1, 0), (0, 1), (1, 1)]):
        frames = shots == s
        pred_j[t, frames, :, :2] = joints[a, frames]
        pred_j[t, frames, :, 2] = 1.0
    sc = score_people(pred_masks, pred_j, gt, joints, visible, shots, SCORED, min_pixels=1)
    np.testing.assert_allclose(sc.mask_iou_per_actor, [1.0, 1.0])
    assert sc.pck_all == 1.0 and sc.pck_no_hips == 1.0 and sc.id_switches == 0 and sc.detection_recall == 1.0
    np.testing.assert_array_equal(sc.actor_of_track, [0, 1, 0, 1])
    assert np.isnan(sc.pck[0]) and sc.pck_counts[1] == 15  # pelvis is not scored; actor 1 hidden in frame 7
    # Move every left wrist of track 0 far away, drop track 3's joints: PCK falls by exactly those joints.
    pred_j[0, :, 20, :2] += 100
    pred_j[3, :, :, 2] = 0
    sc = score_people(pred_masks, pred_j, gt, joints, visible, shots, SCORED, min_pixels=1)
    wrong = 4 + 3 * 12  # 4 left wrists (shot 0) + 3 frames of 12 joints of actor 1 in shot 1
    assert sc.pck_all == pytest.approx(1 - wrong / (15 * 12))
    assert sc.pck[20] == pytest.approx(1 - (4 + 3) / 15)


# ---------------------------------------------------------------------------------------------------------
# The mediapipe estimator end to end
# ---------------------------------------------------------------------------------------------------------
F_CLIP = 8


@pytest.fixture(scope="module")
def clip():
    return painted_clip(F_CLIP)


@pytest.fixture(scope="module")
def tracks(clip):
    frames = clip[0]
    shots = np.array([0] * 4 + [1] * 4)
    return estimate_people(frames, shots, PeopleConfig(use_hog=False)), shots


def test_estimate_people_finds_tracks_masks_and_keypoints(clip, tracks):
    frames, gt_masks, joints, visible = clip
    out, shots = tracks
    N = out.n_tracks
    assert out.masks.shape == gt_masks.shape and out.masks.dtype == np.uint8
    assert out.keypoints2d.shape == (N, F_CLIP, 33, 3) and out.world_landmarks.shape == (N, F_CLIP, 33, 3)
    assert out.boxes.shape == (N, F_CLIP, 4) and out.present.shape == (N, F_CLIP)
    assert out.face_landmarks.shape == (N, F_CLIP, 468, 3)
    # Three people in each of the two shots; tracks live in one shot only, ids are new after the cut.
    assert sorted(out.shot_of_track.tolist()) == [0, 0, 0, 1, 1, 1]
    for n in range(N):
        assert not np.any(out.present[n, shots != out.shot_of_track[n]])
        assert out.present[n].sum() >= 3
        p = out.present[n]
        # Absent entries are zero; mask pixels of a track only where it is present.
        assert np.all(out.keypoints2d[n, ~p] == 0) and np.all(out.boxes[n, ~p] == 0)
        assert not np.any(out.masks[~p] == n + 1)
        # Boxes hold the confident keypoints; world landmarks are metric and hip-centred.
        kp = out.keypoints2d[n, p]
        conf = kp[..., 2] > 0.5
        b = out.boxes[n, p][:, None]
        assert np.all(((kp[..., 0] >= b[..., 0] - 1) & (kp[..., 0] <= b[..., 2] + 1))[conf])
        hips = out.world_landmarks[n, p][:, [23, 24]].mean(1)
        assert np.abs(hips).max() < 0.05
        height = np.ptp(out.world_landmarks[n, p][..., 1], axis=1)
        assert np.all((height > 0.7) & (height < 2.2)) and 1.2 < np.median(height) < 2.0  # metres, head to feet
    sc = score_people(out.masks, out.smpl_keypoints(), gt_masks, joints, visible, shots, SCORED)
    assert sc.id_switches == 0
    assert sc.detection_recall >= 0.85
    assert sc.mask_iou >= 0.75 and sc.mask_iou_per_actor.min() >= 0.6
    assert sc.pck_all >= 0.8
    # The two large, unoccluded faces are found by FaceMesh in most frames.
    big = [n for n in range(N) if np.median(np.ptp(out.keypoints2d[n, out.present[n], :, 1], axis=1)) > 200]
    assert len(big) == 4
    assert out.face_mesh_found[big].sum() >= 0.75 * out.present[big].sum()
    fb = out.face_boxes[big][out.face_mesh_found[big]]
    assert np.all(fb[:, 2] > fb[:, 0]) and np.all(fb[:, 3] > fb[:, 1])


def test_people_tracks_round_trip(tracks, tmp_path):
    from showmaker.atomic import atomic_save_npz

    out = tracks[0]
    atomic_save_npz(tmp_path / "people.npz", **out.to_arrays())
    with np.load(tmp_path / "people.npz") as z:
        back = PeopleTracks.from_arrays(z)
    for k, v in out.to_arrays().items():
        np.testing.assert_array_equal(getattr(back, k), v)


def test_no_people_and_bad_input():
    frames = np.full((3, 120, 160, 3), 128, np.uint8)
    out = estimate_people(frames, np.zeros(3, int), PeopleConfig(use_hog=False, faces=False))
    assert out.n_tracks == 0 and out.masks.shape == (3, 120, 160) and not out.masks.any()
    assert out.keypoints2d.shape == (0, 3, 33, 3)
    with pytest.raises(ValueError, match="one entry per frame"):
        estimate_people(frames, np.zeros(2, int))
    with pytest.raises(ValueError, match="uint8"):
        estimate_people(frames.astype(np.float32), np.zeros(3, int), PeopleConfig(use_hog=False))


def test_unbundled_model_complexity_fails_without_download():
    import mediapipe as mp
    from pathlib import Path

    lite = Path(mp.__file__).parent / "modules" / "pose_landmark" / "pose_landmark_lite.tflite"
    if lite.exists():
        pytest.skip("this mediapipe install has the lite pose model")
    with pytest.raises(FileNotFoundError, match="model_complexity=1"):
        estimate_people(np.zeros((1, 32, 32, 3), np.uint8), np.zeros(1, int), PeopleConfig(model_complexity=0))
    assert not lite.exists()


def test_keypoint_pixel_convention_is_flip_consistent():
    """x_px = x_norm * W puts pixel centres at +0.5: mirroring the image maps x to W - x (not W - 1 - x)."""
    import mediapipe as mp

    swap = [MP_LANDMARK_NAMES.index(n.replace("left", "@").replace("right", "left").replace("@", "right"))
            for n in MP_LANDMARK_NAMES]
    residuals = []
    with mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1) as pose:
        for W, cx in ((200, 90), (233, 120), (201, 100)):
            img, m, _, _ = paint_person(240, W, cx, 10, 220, (40, 60, 170), (50, 50, 60))
            frame = np.full((240, W, 3), 190, np.uint8)
            frame[m] = img[m]
            a = pose.process(frame).pose_landmarks.landmark
            b = pose.process(np.ascontiguousarray(frame[:, ::-1])).pose_landmarks.landmark
            xa = np.array([p.x for p in a]) * W
            xb = np.array([p.x for p in b]) * W
            residuals.append(np.median(xa + xb[swap] - W))
    assert abs(np.mean(residuals)) < 0.5  # the other convention would give -1


def test_default_synthetic_clip_first_shot(default_clip):
    """The first shot of the default synthetic clip (both actors, 30 frames): people found and tracked."""
    clip = default_clip
    F = int(np.count_nonzero(clip.shot_ids == clip.shot_ids[0]))
    frames = np.stack([clip.frames[i] for i in range(F)])
    shots = clip.shot_ids[:F]
    out = estimate_people(frames, shots, PeopleConfig(faces=False))
    sc = score_people(out.masks, out.smpl_keypoints(), clip.masks[:F], clip.joints2d[:, :F],
                      clip.joint_visible[:, :F], shots, SCORED, min_pixels=100)
    assert out.n_tracks == 2 and sorted(sc.actor_of_track.tolist()) == [0, 1]
    assert sc.id_switches == 0 and sc.detection_recall >= 0.9
    assert sc.mask_iou >= 0.75 and sc.pck_all >= 0.75
