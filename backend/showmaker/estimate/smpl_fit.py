"""SMPL initialisation without a learned regressor: fit SMPL to detected keypoints by optimisation.

Where no SMPL regressor (CoMotion, :mod:`.comotion`) is configured, every actor's SMPL parameters per
frame come from fitting the body model to mediapipe's pose landmarks (DESIGN.md "Estimators"):

* 2D: the 33 landmarks in pixels with a confidence (mediapipe's visibility), per frame, with the frame's K;
* 3D (optional): mediapipe's world landmarks (metres, origin between mediapipe's hips, axes aligned with
  the camera: x right, y down, z away; see ``PeopleTracks.world_landmarks``).

Unknowns, fitted jointly for all frames of all actors in one batch (torch; L-BFGS by default, Adam as an
option): per frame the pose [24, 3] (joint 0 = global orientation in the CAMERA frame) and the camera-space
translation [3]; per actor the betas [10]. The body is placed as the project's convention says
(``x = v(pose, betas) + transl``, scale 1: the fitted body is metric through the mean-shape prior).

Correspondence (:data:`MEDIAPIPE_TO_SMPL`, landmark -> body point, weight):

========================  ==========================================  ======  ================================
mediapipe                 body point                                  weight  why
========================  ==========================================  ======  ================================
shoulders, elbows,        SMPL joints 16/17, 18/19, 20/21,            1.0     same anatomical point
wrists, knees, ankles     4/5, 7/8
hips (23, 24)             SMPL hip joints 1/2                         0.3     SMPL's hip joints sit inside the
                                                                              pelvis, higher and closer
                                                                              together than mediapipe's hip
                                                                              landmarks: a lower weight, no
                                                                              learned offset
nose, eyes, ears          the body model's ``nose``/``leye``/``reye``  0.5     surface points, skinned like
(0, 2, 5, 7, 8)           /``lear``/``rear`` vertices                          the mesh (smplx's vertex ids
heels (29, 30)            ``LHeel``/``RHeel`` vertices                 0.5     for real SMPL; the procedural
foot index (31, 32)       ``LBigToe``/``RBigToe`` vertices             0.5     body stores its own)
eye corners, mouth,       (none)                                      0       no stable counterpart
fingers (1, 3, 4, 6,
9, 10, 17-22)
========================  ==========================================  ======  ================================

Left and right are the body's own in both. Keypoints can also be given in SMPL's 24-joint layout
(``[..., 24, 3]``, e.g. ground-truth 2D joints), where every joint is its own correspondence.

Losses (weights in :class:`SmplFitConfig`, all ours):

* 2D reprojection: Geman-McClure ``rho(r) = r^2 / (1 + r^2 / sigma^2)`` on the pixel distance divided by
  ``kp_noise`` times the person's size (the diagonal of the confident keypoints' box), weighted by
  confidence x correspondence weight. ``sigma`` anneals from ``sigma_start`` to ``sigma`` (graduated
  non-convexity: far-off keypoints still pull at the start, outliers are ignored at the end).
* 3D landmarks: scale-free. For a fixed list of bones between landmarks (arms, legs, feet, shoulder and
  hip lines, spine, head direction) ``1 - cos`` between the model's bone direction and mediapipe's,
  in the camera frame. Why directions and not metric positions: mediapipe's metric scale is itself a
  mean-body prior (no more informative than our shape prior), its origin is its own hip midpoint (not
  SMPL's pelvis), and its depth axis is its least accurate one; what it adds over 2D is the direction of
  each limb in depth (towards or away from the camera), which 2D keypoints cannot tell.
* Pose prior: L2 on the body pose (axis-angle, per-joint weights: unobserved joints such as hands and
  collars are held harder) plus a hinge on knees and elbows bending backwards (SMPLify's rule: knees
  bend about +x, the left elbow about -y, the right about +y).
* Shape prior: L2 on the betas.
* Temporal smoothness (small): squared acceleration of camera-space joints between consecutive present
  frames of the same shot (never across a cut).

Initialisation: the global orientation from the world landmarks' hip and shoulder lines when given, else
the best of four yaw hypotheses around "upright" (each refined on the torso and head keypoints); the
translation by a linear PnP with that rotation on the rest-pose torso (shoulders and hips, as the official
code initialises with PnP), i.e. the depth follows from the 2D torso size and K's focal; with world
landmarks, arms, legs and feet start along the landmarks' bone directions (swing-only inverse kinematics).
Then L-BFGS on everything, the Geman-McClure scale annealed between its outer steps.

Measured (tests/test_smpl_fit.py, benchmarks/bench_estimators_smpl.py, docs/estimators.md "SMPL
initialisation"): with world landmarks, root-aligned MPJPE 23-34 mm from 2 px / 2 cm noise on synthetic
keypoints; 2D keypoints alone leave each limb's depth ambiguous (about 100 mm).
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..body.joints import NUM_JOINTS, SMPL_PARENTS
from ..body.lbs import axis_angle_to_matrix, matrix_to_axis_angle
from .landmarks import MP_LANDMARK_NAMES as MEDIAPIPE_LANDMARKS

__all__ = [
    "MEDIAPIPE_LANDMARKS",
    "MEDIAPIPE_TO_SMPL",
    "BodyKeypoints",
    "Correspondence",
    "SmplFitConfig",
    "fit_smpl",
    "mpjpe_root_aligned",
]


@dataclass(frozen=True)
class Correspondence:
    """mediapipe landmark ``landmark`` <-> a body point: SMPL joint ``joint``, or (``vertex`` set) the body
    model's named surface vertex (smplx's extra-joint names), with a loss ``weight``."""

    landmark: int
    weight: float
    joint: int | None = None
    vertex: str | None = None


_HIP_WEIGHT = 0.3
_SURFACE_WEIGHT = 0.5
#: The 33 -> body correspondence (landmarks not listed have none; see the module docstring).
MEDIAPIPE_TO_SMPL: tuple[Correspondence, ...] = (
    Correspondence(11, 1.0, joint=16), Correspondence(12, 1.0, joint=17),
    Correspondence(13, 1.0, joint=18), Correspondence(14, 1.0, joint=19),
    Correspondence(15, 1.0, joint=20), Correspondence(16, 1.0, joint=21),
    Correspondence(23, _HIP_WEIGHT, joint=1), Correspondence(24, _HIP_WEIGHT, joint=2),
    Correspondence(25, 1.0, joint=4), Correspondence(26, 1.0, joint=5),
    Correspondence(27, 1.0, joint=7), Correspondence(28, 1.0, joint=8),
    Correspondence(0, _SURFACE_WEIGHT, vertex="nose"),
    Correspondence(2, _SURFACE_WEIGHT, vertex="leye"), Correspondence(5, _SURFACE_WEIGHT, vertex="reye"),
    Correspondence(7, _SURFACE_WEIGHT, vertex="lear"), Correspondence(8, _SURFACE_WEIGHT, vertex="rear"),
    Correspondence(29, _SURFACE_WEIGHT, vertex="LHeel"), Correspondence(30, _SURFACE_WEIGHT, vertex="RHeel"),
    Correspondence(31, _SURFACE_WEIGHT, vertex="LBigToe"), Correspondence(32, _SURFACE_WEIGHT, vertex="RBigToe"),
)  # fmt: skip

#: Bones (landmark pairs) of the scale-free 3D loss; -1 / -2 are the hip / shoulder midpoints, -3 mid-ears.
_BONES_3D: tuple[tuple[int, int], ...] = (
    (11, 13), (13, 15), (12, 14), (14, 16),  # arms
    (23, 25), (25, 27), (24, 26), (26, 28),  # legs
    (27, 31), (28, 32), (29, 31), (30, 32),  # feet
    (12, 11), (24, 23),  # shoulder and hip lines
    (-1, -2),  # spine
    (-3, 0),  # head: mid-ears -> nose
)
_TORSO = (11, 12, 23, 24)  # landmarks used for initialisation (mediapipe layout)
_TORSO_SMPL = (16, 17, 1, 2)  # the same in SMPL's layout

#: Per-joint multipliers of the pose prior (SMPL order; joint 0 is the global orientation, unregularised).
_POSE_PRIOR_JOINT_WEIGHT = np.array(
    [0, 1, 1, 3, 1, 1, 3, 2, 2, 3, 4, 4, 2, 4, 4, 2, 1, 1, 1, 1, 4, 4, 8, 8], dtype=np.float32
)


@dataclass
class SmplFitConfig:
    """Settings of :func:`fit_smpl` (all ours; tuned on synthetic keypoints, see tests/test_smpl_fit.py and
    benchmarks/bench_estimators_smpl.py).

    optimizer: ``"lbfgs"`` (default: ``lbfgs_steps`` outer steps of at most ``lbfgs_inner`` iterations,
        strong-Wolfe line search, the robust scale annealed between steps) or ``"adam"`` (``iters``
        iterations at ``lr``, decayed by the total factor ``lr_decay``). L-BFGS reached in ~2 s what Adam
        needed ~1,000 iterations for.
    iters_init / lr_init: Adam iterations and learning rate of the initial global stage (orientation +
        translation on the torso and head keypoints, once per yaw hypothesis).
    kp_noise: expected keypoint error as a fraction of the person's size (the 2D residual unit).
    sigma / sigma_start: Geman-McClure scale in those units at the end / start of the full fit.
    conf_min: keypoints with a lower confidence are ignored (and don't count as detections).
    min_keypoints: a frame needs this many usable keypoints to count as detected.
    min_depth: metres; an initial translation closer than this is pushed back along the pixel ray.
    num_threads: torch CPU threads during the fit (restored afterwards; None: leave as is). These small
        batched problems ran ~5x faster single-threaded than with 2 threads on a busy 2-core machine.
    w_2d, w_3d, w_pose, w_limit, w_betas, w_smooth: loss weights. ``w_3d`` multiplies ``(1 - cos) /
        (1 - cos(angle_noise_deg))`` per bone, ``w_smooth`` the squared joint acceleration in units of
        ``accel_noise`` metres per frame squared.
    hip_weight: multiplier of the 2D hip correspondences (on top of :data:`MEDIAPIPE_TO_SMPL`'s).
    fit_betas: optimise the shared betas (else they stay 0).
    ik_init: with world landmarks, start arms, legs and feet along the landmarks' bone directions
        (swing-only inverse kinematics) instead of the T-pose.
    """

    optimizer: str = "lbfgs"
    lbfgs_steps: int = 10
    lbfgs_inner: int = 20
    iters_init: int = 60
    iters: int = 300
    lr_init: float = 0.05
    lr: float = 0.03
    lr_decay: float = 0.1
    kp_noise: float = 0.01
    sigma: float = 5.0
    sigma_start: float = 50.0
    conf_min: float = 0.3
    min_keypoints: int = 6
    min_depth: float = 0.3
    num_threads: int | None = 1
    w_2d: float = 1.0
    w_3d: float = 1.0
    angle_noise_deg: float = 15.0
    w_pose: float = 0.5
    w_limit: float = 50.0
    w_betas: float = 1.0
    w_smooth: float = 0.05
    accel_noise: float = 0.01
    hip_weight: float = 1.0
    fit_betas: bool = True
    ik_init: bool = True


# ------------------------------------------------------------------------------------- body keypoints
def _extra_vertex_ids(body_model) -> dict[str, int]:
    """smplx-style extra-joint vertex ids of ``body_model`` (nose, eyes, ears, toes, heels, fingertips)."""
    if body_model.num_vertices == 6890:
        from smplx.vertex_ids import vertex_ids  # noqa: PLC0415

        return {k: int(v) for k, v in vertex_ids["smplh"].items()}
    from ..body.model import read_model_file  # noqa: PLC0415

    data = read_model_file(body_model.source)
    names = [str(s) for s in np.asarray(data.get("extra_joint_names", []))]
    return dict(zip(names, (int(i) for i in np.asarray(data.get("extra_joint_vertices", [])))))


class BodyKeypoints(torch.nn.Module):
    """A compact, differentiable view of a body model for fitting: SMPL joints and a few named surface
    points as functions of (pose, betas, transl), without skinning the whole mesh.

    Rest joints and rest surface points are linear in the betas (SMPL's shape space), so they are
    tabulated once from the model's public ``rest_joints`` / ``rest_vertices``; posing uses the same
    forward kinematics as the model (``showmaker.body.lbs``) and each surface point's own skinning weights.
    Pose-corrective blend shapes (real SMPL only) are ignored for the surface points.
    """

    def __init__(self, body_model, vertex_names: tuple[str, ...] | None = None):
        super().__init__()
        ids = _extra_vertex_ids(body_model)
        if vertex_names is None:
            vertex_names = tuple(c.vertex for c in MEDIAPIPE_TO_SMPL if c.vertex is not None)
        missing = [n for n in vertex_names if n not in ids]
        if missing:
            raise ValueError(f"body model {body_model.source} has no vertex ids for {missing}")
        self.vertex_names = tuple(vertex_names)
        vid = torch.tensor([ids[n] for n in vertex_names], dtype=torch.long)
        nb = body_model.num_betas
        with torch.no_grad():
            device = body_model.device
            basis = torch.cat([torch.zeros(1, nb), torch.eye(nb)]).to(device)
            J = body_model.rest_joints(basis).float().cpu()  # [1 + nb, 24, 3]
            V = body_model.rest_vertices(basis)[:, vid.to(device)].float().cpu()  # [1 + nb, P, 3]
            W = body_model.weights[vid.to(body_model.weights.device)].float().cpu()  # [P, 24]
        self.num_betas = nb
        self.register_buffer("J0", J[0])
        self.register_buffer("Jdirs", (J[1:] - J[0]).permute(1, 2, 0).contiguous())  # [24, 3, nb]
        self.register_buffer("V0", V[0])
        self.register_buffer("Vdirs", (V[1:] - V[0]).permute(1, 2, 0).contiguous())  # [P, 3, nb]
        self.register_buffer("W", W)
        self.parents = [int(p) for p in SMPL_PARENTS]

    def rest(self, betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rest joints [B, 24, 3] and rest surface points [B, P, 3] for betas [B, nb]."""
        b = betas.shape[0]
        J = self.J0 + (betas @ self.Jdirs.reshape(-1, self.num_betas).T).reshape(b, -1, 3)
        V = self.V0 + (betas @ self.Vdirs.reshape(-1, self.num_betas).T).reshape(b, -1, 3)
        return J, V

    def forward(self, rot_mats: torch.Tensor, betas: torch.Tensor,
                transl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """rot_mats [B, 24, 3, 3] local rotations (joint 0 global), betas [B, nb], transl [B, 3] ->
        posed joints [B, 24, 3] and surface points [B, P, 3], both ``+ transl``.

        The same kinematics as ``showmaker.body.lbs.forward_kinematics`` (the root turns about its rest
        position), evaluated one tree level at a time so that a batch costs ~9 matmuls instead of 23.
        """
        rest_j, rest_v = self.rest(betas)
        R = rot_mats[:, :1]
        J = rest_j[:, :1]
        for idx, par, par_id in self._levels:
            Rp = R[:, par]
            J = torch.cat([J, J[:, par] + (Rp @ (rest_j[:, idx] - rest_j[:, par_id])[..., None])[..., 0]], 1)
            R = torch.cat([R, Rp @ rot_mats[:, idx]], 1)
        # Back to SMPL's joint order.
        R, J = R[:, self._inverse], J[:, self._inverse]
        # Each surface point: sum_j w_pj (R_j (x - rest_j) + J_j).
        t = J - (R @ rest_j[..., None])[..., 0]  # [B, 24, 3]
        b = R.shape[0]
        Rw = (self.W @ R.reshape(b, NUM_JOINTS, 9)).reshape(b, -1, 3, 3)
        tw = self.W @ t
        points = (Rw @ rest_v[..., None])[..., 0] + tw
        return J + transl[:, None], points + transl[:, None]

    @property
    def _levels(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per tree level below the root: (joints, their parents' positions in the level-ordered arrays,
        their parents' joint ids)."""
        if not hasattr(self, "_levels_cache"):
            depth = [0] * NUM_JOINTS
            for j in range(1, NUM_JOINTS):
                depth[j] = depth[self.parents[j]] + 1
            order = [0]
            levels = []
            for d in range(1, max(depth) + 1):
                idx = [j for j in range(NUM_JOINTS) if depth[j] == d]
                levels.append((idx, [order.index(self.parents[j]) for j in idx], [self.parents[j] for j in idx]))
                order += idx
            # rot_mats / rest_j are indexed by SMPL joint ids; R and J are built in level order.
            self._levels_cache = [tuple(torch.as_tensor(a) for a in level) for level in levels]
            self._inverse_cache = torch.as_tensor([order.index(j) for j in range(NUM_JOINTS)])
        return self._levels_cache

    @property
    def _inverse(self) -> torch.Tensor:
        self._levels  # noqa: B018 - builds the cache
        return self._inverse_cache


# ------------------------------------------------------------------------------------------- layouts
@dataclass
class _Layout:
    """Where each observed keypoint comes from on the body: ``src_joint[k]`` >= 0 (a joint) or
    ``src_point[k]`` >= 0 (a surface point), with ``weight[k]``; ``index[k]`` is its input column.
    ``torso``: input columns of the left/right shoulder and left/right hip (PnP); ``init``: the columns
    used to choose the global orientation (torso and head)."""

    index: np.ndarray
    src_joint: np.ndarray
    src_point: np.ndarray
    weight: np.ndarray
    torso: tuple[int, ...]
    init: tuple[int, ...]

    def gather(self, joints: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Body points [B, K, 3] in the order of ``index`` from joints [B, 24, 3] and points [B, P, 3]."""
        if not hasattr(self, "_perm"):
            is_joint = self.src_joint >= 0
            order = np.concatenate([np.flatnonzero(is_joint), np.flatnonzero(~is_joint)])
            self._jidx = torch.as_tensor(self.src_joint[is_joint])
            self._pidx = torch.as_tensor(self.src_point[~is_joint])
            self._perm = torch.as_tensor(np.argsort(order))
        return torch.cat([joints[:, self._jidx], points[:, self._pidx]], 1)[:, self._perm]


def _layout(n_input: int, vertex_names: tuple[str, ...]) -> _Layout:
    if n_input == 33:
        idx, sj, sp, w = [], [], [], []
        for c in MEDIAPIPE_TO_SMPL:
            idx.append(c.landmark)
            sj.append(-1 if c.joint is None else c.joint)
            sp.append(-1 if c.vertex is None else vertex_names.index(c.vertex))
            w.append(c.weight)
        return _Layout(np.array(idx), np.array(sj), np.array(sp), np.array(w, np.float32), _TORSO,
                       _TORSO + (0, 2, 5, 7, 8))
    if n_input == NUM_JOINTS:
        w = np.ones(NUM_JOINTS, np.float32)
        return _Layout(np.arange(NUM_JOINTS), np.arange(NUM_JOINTS), -np.ones(NUM_JOINTS, int), w, _TORSO_SMPL,
                       _TORSO_SMPL + (12, 15))
    raise ValueError(f"keypoints must be mediapipe's 33 landmarks or SMPL's 24 joints, got {n_input} per frame")


def body_landmarks(keypoint_model: BodyKeypoints, pose: torch.Tensor, betas: torch.Tensor,
                   transl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The body's positions of mediapipe's 33 landmarks [B, 33, 3] (zeros where no correspondence) and
    which landmarks have one [33] bool. pose [B, 24, 3] axis-angle, betas [B, nb], transl [B, 3].
    (Used to synthesise keypoints with known ground truth, and to compare a fit with detections.)"""
    layout = _layout(33, keypoint_model.vertex_names)
    joints, points = keypoint_model(axis_angle_to_matrix(pose), betas, transl)
    out = torch.zeros(pose.shape[0], 33, 3, dtype=joints.dtype, device=joints.device)
    out[:, torch.as_tensor(layout.index)] = layout.gather(joints, points)
    has = torch.zeros(33, dtype=torch.bool)
    has[torch.as_tensor(layout.index)] = True
    return out, has


# --------------------------------------------------------------------------------------- initialisation
def _frame_from_axes(left: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Rotation [..., 3, 3] taking the body frame (x = body left, y = up, z = forward) to the camera frame,
    from the body's left and up directions in camera coordinates (orthonormalised, up kept)."""
    u = up / np.linalg.norm(up, axis=-1, keepdims=True).clip(1e-9)
    l = left - (left * u).sum(-1, keepdims=True) * u
    l = l / np.linalg.norm(l, axis=-1, keepdims=True).clip(1e-9)
    f = np.cross(l, u)
    return np.stack([l, u, f], -1)


def _yaw_hypotheses() -> np.ndarray:
    """Four upright orientations [4, 3, 3]: facing the camera, its left, away, its right."""
    facing = np.diag([1.0, -1.0, -1.0])  # body left -> image right, up -> -y, forward -> towards camera
    out = []
    for yaw in (0.0, 0.5 * math.pi, math.pi, 1.5 * math.pi):
        c, s = math.cos(yaw), math.sin(yaw)
        out.append(facing @ np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]))
    return np.stack(out)


def _orientation_from_world(world: np.ndarray, conf: np.ndarray, conf_min: float) -> tuple[np.ndarray, np.ndarray]:
    """Global orientations [B, 3, 3] from mediapipe world landmarks [B, 33, 3] (camera-aligned axes), and
    which frames had confident shoulders and hips [B]."""
    ls, rs, lh, rh = (world[:, i] for i in _TORSO)
    left = (ls - rs) + (lh - rh)
    up = 0.5 * (ls + rs) - 0.5 * (lh + rh)
    ok = (conf[:, list(_TORSO)] >= conf_min).all(-1) & (np.linalg.norm(up, axis=-1) > 1e-3)
    return _frame_from_axes(left, up), ok


def _pnp_translation(R: np.ndarray, rest_torso: np.ndarray, root: np.ndarray, uv: np.ndarray, w: np.ndarray,
                     K: np.ndarray, min_depth: float) -> np.ndarray:
    """Translation [B, 3] placing rest-pose torso points [B, T, 3] (turned by R [B, 3, 3] about the root
    joint [B, 3]) onto pixels uv [B, T, 2] with weights w [B, T] (linear least squares per frame)."""
    c = np.einsum("bij,btj->bti", R, rest_torso - root[:, None]) + root[:, None]  # [B, T, 3]
    fx, fy, cx, cy = K[:, 0, 0, None], K[:, 1, 1, None], K[:, 0, 2, None], K[:, 1, 2, None]
    du, dv = uv[..., 0] - cx, uv[..., 1] - cy
    zero = np.zeros_like(du)
    # fx t_x - du t_z = du c_z - fx c_x ;  fy t_y - dv t_z = dv c_z - fy c_y
    A = np.concatenate([np.stack([fx + zero, zero, -du], -1), np.stack([zero, fy + zero, -dv], -1)], 1)
    b = np.concatenate([du * c[..., 2] - fx * c[..., 0], dv * c[..., 2] - fy * c[..., 1]], 1)
    sw = np.sqrt(np.concatenate([w, w], 1))[..., None]
    A, b = A * sw, b * sw[..., 0]
    t = np.zeros((R.shape[0], 3))
    for i in range(R.shape[0]):
        if (w[i] > 0).sum() >= 2:
            t[i] = np.linalg.lstsq(A[i], b[i], rcond=None)[0]
    # A degenerate or behind-the-camera solution: place the root on its pixel ray at the minimum depth.
    bad = (c[..., 2].mean(1) + t[:, 2]) < min_depth
    t[bad, 2] = min_depth - c[bad, :, 2].mean(1)
    return t


#: Limb chains initialised from the world landmarks: (SMPL joint, SMPL child along the bone, mediapipe
#: landmarks of the bone's start and end). Parents come before children.
_IK_CHAIN: tuple[tuple[int, int, int, int], ...] = (
    (16, 18, 11, 13), (18, 20, 13, 15),  # left arm
    (17, 19, 12, 14), (19, 21, 14, 16),  # right arm
    (1, 4, 23, 25), (4, 7, 25, 27), (7, 10, 27, 31),  # left leg, foot
    (2, 5, 24, 26), (5, 8, 26, 28), (8, 11, 28, 32),  # right leg, foot
)


def _align(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotations [B, 3, 3] turning unit vectors a [B, 3] onto unit vectors b [B, 3]."""
    v = np.cross(a, b)
    c = (a * b).sum(-1)
    s = np.linalg.norm(v, axis=-1)
    axis = v / np.maximum(s, 1e-9)[:, None]
    # Antiparallel: any axis perpendicular to a.
    perp = np.cross(a, np.where(np.abs(a[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]]))
    perp /= np.linalg.norm(perp, axis=-1, keepdims=True).clip(1e-9)
    axis = np.where((s < 1e-6)[:, None] & (c < 0)[:, None], perp, axis)
    angle = np.arctan2(s, c)
    return axis_angle_to_matrix(torch.as_tensor(axis * angle[:, None])).numpy()


def _ik_from_world(R_root: np.ndarray, rest_joints: np.ndarray, world: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Local joint rotations [B, 24, 3, 3] that point the body's arms, legs and feet along mediapipe's
    world-landmark bones (swing only, no twist), given the global orientation R_root [B, 3, 3], rest
    joints [24, 3] and world landmarks [B, 33, 3]; identity where ``ok`` [B, n_chain] is False."""
    B = R_root.shape[0]
    local = np.repeat(np.eye(3)[None, None], B, 0).repeat(NUM_JOINTS, 1)
    glob = np.zeros((B, NUM_JOINTS, 3, 3))
    glob[:, 0] = R_root
    for j in range(1, NUM_JOINTS):
        glob[:, j] = glob[:, SMPL_PARENTS[j]]  # identity locals until set below (parents come first)
        for k, (joint, child, m0, m1) in enumerate(_IK_CHAIN):
            if joint != j:
                continue
            parent_g = glob[:, SMPL_PARENTS[j]]
            rest_dir = rest_joints[child] - rest_joints[joint]
            a = parent_g @ (rest_dir / np.linalg.norm(rest_dir))
            b = world[:, m1] - world[:, m0]
            b = b / np.linalg.norm(b, axis=-1, keepdims=True).clip(1e-9)
            Rg = _align(a, b) @ parent_g
            Rl = np.swapaxes(parent_g, -1, -2) @ Rg
            local[:, j] = np.where(ok[:, k, None, None], Rl, np.eye(3))
            glob[:, j] = parent_g @ local[:, j]
    return local


# ------------------------------------------------------------------------------------------------- fit
def _as_batch_K(K, n_frames: int) -> np.ndarray:
    K = np.asarray(K, dtype=np.float64)
    if K.shape == (3, 3):
        return np.broadcast_to(K, (n_frames, 3, 3)).copy()
    if K.shape == (n_frames, 3, 3):
        return K.copy()
    raise ValueError(f"K must be [3, 3] or [F, 3, 3] with F = {n_frames}; got {K.shape}")


def _fill_missing(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Copy each absent frame's value [N, F, ...] from the nearest present frame of the same actor."""
    out = values.copy()
    for n in range(values.shape[0]):
        idx = np.flatnonzero(present[n])
        if len(idx) == 0:
            continue
        nearest = idx[np.abs(np.arange(values.shape[1])[:, None] - idx[None]).argmin(1)]
        out[n] = values[n, nearest]
    return out


def _gm(r2: torch.Tensor, sigma: float) -> torch.Tensor:
    """Geman-McClure on squared residuals: r^2 / (1 + r^2 / sigma^2) (quadratic near 0, saturates at sigma^2)."""
    return r2 / (1.0 + r2 / (sigma * sigma))


def _project(X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Camera points [B, P, 3] -> pixels [B, P, 2] (pixel centres at +0.5 are K's convention)."""
    uvw = X @ K.transpose(-1, -2)
    return uvw[..., :2] / uvw[..., 2:].clamp_min(1e-3)


_MID = {-1: 33, -2: 34, -3: 35}  # hip, shoulder and ear midpoints appended after the 33 landmarks
_BONE_A = [_MID.get(i, i) for i, _ in _BONES_3D]
_BONE_B = [_MID.get(j, j) for _, j in _BONES_3D]
_TORSO_BONES = np.array([a in (11, 12, 23, 24, -1, -2) and b in (11, 12, 23, 24, -1, -2) for a, b in _BONES_3D])


def _bone_dirs(X: torch.Tensor) -> torch.Tensor:
    """Unit bone vectors [B, nbones, 3] of mediapipe-layout points X [B, 33, 3] (see ``_BONES_3D``)."""
    ext = torch.cat([X, 0.5 * (X[:, 23:24] + X[:, 24:25]), 0.5 * (X[:, 11:12] + X[:, 12:13]),
                     0.5 * (X[:, 7:8] + X[:, 8:9])], 1)
    d = ext[:, _BONE_B] - ext[:, _BONE_A]
    return d / d.norm(dim=-1, keepdim=True).clamp_min(1e-6)


def _bone_conf(conf: np.ndarray) -> np.ndarray:
    """Confidence of each 3D bone [..., nbones]: the smaller of its ends' (midpoints: of both sources)."""
    ext = np.concatenate([conf, np.minimum(conf[..., 23], conf[..., 24])[..., None],
                          np.minimum(conf[..., 11], conf[..., 12])[..., None],
                          np.minimum(conf[..., 7], conf[..., 8])[..., None]], -1)
    return np.minimum(ext[..., _BONE_A], ext[..., _BONE_B])


def _smoothness_triples(N: int, F: int, shot_ids) -> np.ndarray:
    """Batch indices (f - 1, f, f + 1) [T, 3] of consecutive frames of one actor inside one shot."""
    shots = np.zeros(F, int) if shot_ids is None else np.asarray(shot_ids).reshape(F)
    f = np.arange(1, F - 1)
    f = f[(shots[f - 1] == shots[f]) & (shots[f] == shots[f + 1])]
    base = (np.arange(N)[:, None] * F + f[None]).reshape(-1)
    return np.stack([base - 1, base, base + 1], 1).astype(np.int64)


def _person_size(uv: np.ndarray, conf: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Person size [N, F] in pixels: the diagonal of the confident keypoints' box (absent frames: the
    nearest present frame's; at least 10 px)."""
    pts = np.where(conf[..., None] > 0, uv, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: frames without keypoints
        span = np.nanmax(pts, -2) - np.nanmin(pts, -2)
    size = np.nan_to_num(np.linalg.norm(span, axis=-1), nan=0.0)
    size = _fill_missing(np.where(present, size, 0.0)[..., None], present)[..., 0]
    return np.maximum(size, 10.0)


def fit_smpl(
    keypoints2d: np.ndarray,
    K: np.ndarray,
    world_landmarks: np.ndarray | None = None,
    present: np.ndarray | None = None,
    shot_ids: np.ndarray | None = None,
    body_model=None,
    cfg: SmplFitConfig | None = None,
    device: str | torch.device = "cpu",
    init: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Fit SMPL to every actor's keypoints in every frame (one batched optimisation).

    Args:
        keypoints2d: [N, F, 33, 3] mediapipe landmarks (x, y pixels with pixel centres at +0.5; confidence)
            or [N, F, 24, 3] SMPL joints; [F, ...] for one actor.
        K: [3, 3] or per frame [F, 3, 3] intrinsics (pixels).
        world_landmarks: optional [N, F, 33, 3] mediapipe world landmarks (metres, camera-aligned axes);
            their confidence is the 2D one. Only with the 33-landmark layout.
        present: optional [N, F] bool, the actor is detected in the frame (default: enough confident
            keypoints). Absent frames are filled (nearest present frame + smoothness) and flagged invalid.
        shot_ids: optional [F] shot index per frame; smoothness never crosses a change of shot.
        body_model: a ``showmaker.body.BodyModel`` (default ``load_body_model()``).
        cfg: :class:`SmplFitConfig`.
        device: torch device of the optimisation.
        init: optional warm start with this function's output layout (``pose`` [N, F, 24, 3], ``betas``
            [N, 10], ``transl_cam`` [N, F, 3]; e.g. a regressor's estimate or the previous fit); it
            replaces the orientation search and the PnP / world-landmark initialisation.
    Returns:
        dict of numpy arrays: ``pose`` [N, F, 24, 3] (axis-angle, joint 0 = global orientation in the camera
        frame), ``betas`` [N, 10], ``transl_cam`` [N, F, 3] (camera-space joints are
        ``body_model(pose, betas, transl=transl_cam).joints``), ``scale`` [N] (ones), ``valid`` [N, F] bool,
        ``residual`` [N, F] (mean 2D reprojection error in pixels over the frame's confident keypoints;
        NaN where invalid), ``joints_cam`` [N, F, 24, 3]; and ``seconds`` (float, wall time of the fit).
        With [F, ...] input the leading N axis is dropped.
    """
    cfg = cfg or SmplFitConfig()
    threads = torch.get_num_threads()
    limit = cfg.num_threads is not None and torch.device(device).type == "cpu"
    if limit:
        torch.set_num_threads(cfg.num_threads)
    try:
        return _fit_smpl(keypoints2d, K, world_landmarks, present, shot_ids, body_model, cfg, device, init)
    finally:
        if limit:
            torch.set_num_threads(threads)


def _fit_smpl(
    keypoints2d: np.ndarray,
    K: np.ndarray,
    world_landmarks: np.ndarray | None = None,
    present: np.ndarray | None = None,
    shot_ids: np.ndarray | None = None,
    body_model=None,
    cfg: SmplFitConfig | None = None,
    device: str | torch.device = "cpu",
    init: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """:func:`fit_smpl` without the thread setting."""
    t_start = time.perf_counter()
    cfg = cfg or SmplFitConfig()
    if cfg.optimizer not in ("lbfgs", "adam"):
        raise ValueError(f"optimizer must be 'lbfgs' or 'adam', not {cfg.optimizer!r}")
    kp = np.asarray(keypoints2d, dtype=np.float64)
    single = kp.ndim == 3
    if single:
        kp = kp[None]
        world_landmarks = None if world_landmarks is None else np.asarray(world_landmarks)[None]
        present = None if present is None else np.asarray(present)[None]
        init = None if init is None else {k: np.asarray(v)[None] for k, v in init.items()}
    if kp.ndim != 4 or kp.shape[-1] != 3:
        raise ValueError(f"keypoints2d must be [N, F, 33 or 24, 3], got {np.shape(keypoints2d)}")
    N, F, n_kp, _ = kp.shape
    B = N * F
    if world_landmarks is not None:
        world_landmarks = np.asarray(world_landmarks, dtype=np.float64)
        if n_kp != 33 or world_landmarks.shape != (N, F, 33, 3):
            raise ValueError(f"world_landmarks must be [N, F, 33, 3] with 33-landmark keypoints; got "
                             f"{world_landmarks.shape} with {n_kp} keypoints")
    if body_model is None:
        from ..body import load_body_model  # noqa: PLC0415

        body_model = load_body_model()
    device = torch.device(device)
    kmodel = BodyKeypoints(body_model).to(device)
    layout = _layout(n_kp, kmodel.vertex_names)
    Ks = _as_batch_K(K, F)

    def tens(x, dtype=torch.float32):
        return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)

    # ---- observations
    conf = np.nan_to_num(kp[..., 2]).clip(0.0, 1.0)
    conf = np.where(conf >= cfg.conf_min, conf, 0.0)
    uv = np.nan_to_num(kp[..., :2])
    n_good = (conf[..., layout.index] > 0).sum(-1)
    if present is None:
        present = n_good >= cfg.min_keypoints
    else:
        present = np.asarray(present, bool).reshape(N, F) & (n_good >= 2)
    size = _person_size(uv[..., layout.index, :], conf[..., layout.index], present)
    Kb = np.repeat(Ks[None], N, 0).reshape(B, 3, 3)
    K_t = tens(Kb)
    obs_t = tens(uv.reshape(B, n_kp, 2)[:, layout.index])
    w_kp = conf.reshape(B, n_kp)[:, layout.index] * layout.weight[None]
    if n_kp == 33:
        w_kp[:, np.isin(layout.index, (23, 24))] *= cfg.hip_weight
    w_t = tens(w_kp)
    init_mask = tens(np.isin(layout.index, layout.init))
    unit = tens(size.reshape(B, 1, 1) * cfg.kp_noise)  # pixels per 2D residual unit
    use_3d = world_landmarks is not None and cfg.w_3d > 0
    if use_3d:
        wl = world_landmarks.reshape(B, 33, 3)
        target_dirs = _bone_dirs(tens(wl))
        bone_w = tens(_bone_conf(conf.reshape(B, 33)))
        torso_bones = tens(_TORSO_BONES)
        cos_unit = 1.0 - math.cos(math.radians(cfg.angle_noise_deg))
    cols = torch.as_tensor(layout.index)

    def data_terms(rot_mats, betas_b, transl, sigma, init_only=False):
        """Per-frame data loss [B] and posed joints [B, 24, 3]."""
        joints, points = kmodel(rot_mats, betas_b, transl)
        X = layout.gather(joints, points)
        r2 = ((_project(X, K_t) - obs_t) / unit).pow(2).sum(-1)
        w = w_t * init_mask if init_only else w_t
        loss = cfg.w_2d * (w * _gm(r2, sigma)).sum(-1)
        if use_3d:
            full = torch.zeros(X.shape[0], 33, 3, device=device, dtype=X.dtype).index_copy(1, cols, X)
            cos = (_bone_dirs(full) * target_dirs).sum(-1)
            bw = bone_w * torso_bones if init_only else bone_w
            loss = loss + cfg.w_3d * (bw * (1.0 - cos)).sum(-1) / cos_unit
        return loss, joints

    # ---- initialisation: global orientation (hypotheses) and translation (PnP on the torso)
    rest_j, rest_v = kmodel.rest(torch.zeros(1, kmodel.num_betas, device=device))
    rest_j_np = rest_j[0].cpu().numpy()
    col = {c: k for k, c in enumerate(layout.index)}
    rest_torso = layout.gather(rest_j, rest_v)[0].cpu().numpy()[[col[c] for c in layout.torso]]
    torso_uv = uv[..., list(layout.torso), :].reshape(B, 4, 2)
    torso_w = conf[..., list(layout.torso)].reshape(B, 4)
    if init is not None:
        init_pose = np.asarray(init["pose"], dtype=np.float32).reshape(B, NUM_JOINTS, 3)
        R0 = axis_angle_to_matrix(torch.as_tensor(init_pose[:, 0])).double().numpy()
        T0 = np.asarray(init["transl_cam"], dtype=np.float64).reshape(B, 3)
    else:
        if use_3d:
            R_world, ok_world = _orientation_from_world(wl, conf.reshape(B, 33), cfg.conf_min)
        else:
            R_world, ok_world = np.repeat(np.eye(3)[None], B, 0), np.zeros(B, bool)
        hyps = _yaw_hypotheses()[: 1 if ok_world.all() else None]
        best = np.full(B, np.inf)
        R0, T0 = np.repeat(hyps[:1], B, 0), np.zeros((B, 3))
        zero_pose = torch.eye(3, device=device).expand(B, NUM_JOINTS - 1, 3, 3)
        betas0 = torch.zeros(B, kmodel.num_betas, device=device)
        for hyp in hyps:
            Rh = np.where(ok_world[:, None, None], R_world, hyp[None])
            th = _pnp_translation(Rh, np.repeat(rest_torso[None], B, 0), np.repeat(rest_j_np[None, 0], B, 0),
                                  torso_uv, torso_w, Kb, cfg.min_depth)
            Rh_t, th_t = tens(Rh), tens(th)
            scale_t = th_t[:, 2:3].abs().clamp_min(1.0)
            d_rot = torch.zeros(B, 3, device=device, requires_grad=True)
            d_tr = torch.zeros(B, 3, device=device, requires_grad=True)

            def pose_of():
                rot = torch.cat([(Rh_t @ axis_angle_to_matrix(d_rot))[:, None], zero_pose], 1)
                return rot, th_t + d_tr * scale_t

            opt = torch.optim.Adam([d_rot, d_tr], lr=cfg.lr_init)
            for _ in range(cfg.iters_init):
                opt.zero_grad()
                rot, tr = pose_of()
                data_terms(rot, betas0, tr, cfg.sigma_start, init_only=True)[0].sum().backward()
                opt.step()
            with torch.no_grad():
                rot, tr = pose_of()
                loss = data_terms(rot, betas0, tr, cfg.sigma_start, init_only=True)[0].cpu().numpy()
            better = loss < best
            best[better] = loss[better]
            R0[better] = rot[:, 0].cpu().numpy()[better]
            T0[better] = tr.cpu().numpy()[better]

    # Absent frames start from the nearest present frame of the same actor (or facing the camera 5 m away).
    R0 = _fill_missing(R0.reshape(N, F, 3, 3), present).reshape(B, 3, 3)
    T0 = _fill_missing(T0.reshape(N, F, 3), present).reshape(B, 3)
    nobody = np.repeat(~present.any(1), F)
    R0[nobody], T0[nobody] = _yaw_hypotheses()[0], (0.0, 0.0, 5.0)

    body_pose = torch.zeros(B, NUM_JOINTS - 1, 3, device=device)
    betas = torch.zeros(N, kmodel.num_betas, device=device)
    if init is not None:
        body_pose = tens(init_pose[:, 1:]).clone()
        betas = tens(np.asarray(init["betas"]).reshape(N, -1)).clone()
    elif use_3d and cfg.ik_init:
        c33 = conf.reshape(B, 33)
        chain_ok = np.stack([np.minimum(c33[:, m0], c33[:, m1]) > 0 for _, _, m0, m1 in _IK_CHAIN], 1)
        local = _ik_from_world(R0, rest_j_np, wl, chain_ok & present.reshape(B, 1))
        body_pose = matrix_to_axis_angle(torch.as_tensor(local[:, 1:], dtype=torch.float32)).to(device)

    # ---- full fit: orientation and translation as corrections of their initial values
    R0_t, T0_t = tens(R0), tens(T0)
    depth_unit = T0_t[:, 2:3].abs().clamp_min(1.0)
    d_rot = torch.zeros(B, 3, device=device, requires_grad=True)
    d_tr = torch.zeros(B, 3, device=device, requires_grad=True)
    body_pose.requires_grad_(True)
    betas.requires_grad_(cfg.fit_betas)
    params = [d_rot, d_tr, body_pose] + ([betas] if cfg.fit_betas else [])
    prior_w = tens(_POSE_PRIOR_JOINT_WEIGHT[1:])[None, :, None]
    present_t = tens(present.reshape(B))
    trip = torch.as_tensor(_smoothness_triples(N, F, shot_ids), device=device)

    def state():
        rot = torch.cat([(R0_t @ axis_angle_to_matrix(d_rot))[:, None], axis_angle_to_matrix(body_pose)], 1)
        return rot, T0_t + d_tr * depth_unit, betas.repeat_interleave(F, 0)

    def total_loss(sigma: float) -> torch.Tensor:
        rot, transl, betas_b = state()
        data, joints = data_terms(rot, betas_b, transl, sigma)
        loss = (data * present_t).sum()
        loss = loss + cfg.w_pose * (prior_w * body_pose.pow(2)).sum()
        # Joint limits (SMPLify): knees flex about +x; the left elbow about -y, the right about +y.
        limit = (torch.relu(-body_pose[:, 3, 0]).pow(2) + torch.relu(-body_pose[:, 4, 0]).pow(2)
                 + torch.relu(body_pose[:, 17, 1]).pow(2) + torch.relu(-body_pose[:, 18, 1]).pow(2))
        loss = loss + cfg.w_limit * limit.sum() + cfg.w_betas * betas.pow(2).sum()
        if len(trip) and cfg.w_smooth > 0:
            acc = joints[trip[:, 0]] - 2 * joints[trip[:, 1]] + joints[trip[:, 2]]
            loss = loss + cfg.w_smooth * (acc / cfg.accel_noise).pow(2).sum()
        return loss

    def sigma_at(frac: float) -> float:  # anneal over the first 2/3 of the fit, then hold
        return cfg.sigma_start * (cfg.sigma / cfg.sigma_start) ** min(1.0, 1.5 * frac)

    if cfg.optimizer == "lbfgs":
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=cfg.lbfgs_inner, history_size=cfg.lbfgs_inner,
                                line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12)
        for step in range(cfg.lbfgs_steps):
            sigma = sigma_at(step / max(cfg.lbfgs_steps - 1, 1))

            def closure():
                opt.zero_grad()
                loss = total_loss(sigma)
                loss.backward()
                return loss

            opt.step(closure)
    elif cfg.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=cfg.lr)
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, cfg.lr_decay ** (1.0 / max(cfg.iters, 1)))
        for it in range(cfg.iters):
            opt.zero_grad()
            total_loss(sigma_at(it / max(cfg.iters - 1, 1))).backward()
            opt.step()
            sched.step()
    else:
        raise ValueError(f"optimizer must be 'lbfgs' or 'adam', not {cfg.optimizer!r}")

    with torch.no_grad():
        rot, transl, betas_b = state()
        joints, points = kmodel(rot, betas_b, transl)
        err = (_project(layout.gather(joints, points), K_t) - obs_t).norm(dim=-1).cpu().numpy()  # [B, K]
        used = conf.reshape(B, n_kp)[:, layout.index] > 0
        residual = (err * used).sum(-1) / np.maximum(used.sum(-1), 1)
        residual = np.where(present.reshape(B) & used.any(-1), residual, np.nan)
        pose = torch.cat([matrix_to_axis_angle(rot[:, 0])[:, None], body_pose], 1)
    out = {
        "pose": pose.cpu().numpy().reshape(N, F, NUM_JOINTS, 3),
        "betas": betas.detach().cpu().numpy(),
        "transl_cam": transl.cpu().numpy().reshape(N, F, 3),
        "scale": np.ones(N, np.float32),
        "valid": present.copy(),
        "residual": residual.reshape(N, F),
        "joints_cam": joints.cpu().numpy().reshape(N, F, NUM_JOINTS, 3),
    }
    out = {k: (v if v.dtype == bool else v.astype(np.float32)) for k, v in out.items()}
    if single:
        out = {k: v[0] for k, v in out.items()}
    out["seconds"] = float(time.perf_counter() - t_start)
    return out


def mpjpe_root_aligned(joints_a: np.ndarray, joints_b: np.ndarray, root: int = 0) -> np.ndarray:
    """Mean per-joint position error [...] after subtracting each skeleton's root joint ([..., J, 3] inputs)."""
    a = joints_a - joints_a[..., root: root + 1, :]
    b = joints_b - joints_b[..., root: root + 1, :]
    return np.linalg.norm(a - b, axis=-1).mean(-1)
