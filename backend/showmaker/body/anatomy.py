"""Anatomy of the procedural body: its skeleton and the closed tubes that dress it, as functions of the
shape coefficients ``beta`` [NUM_BETAS].

Frame (SMPL's): rest pose is a T-pose, +y up, the body faces +z, its left is +x, metres, the pelvis
joint at the origin. With ``beta = 0`` the soles are at y = -0.94 and the crown at y = +0.76 (1.70 m).
The right side is the exact mirror image of the left. All arrays are float64 numpy.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .joints import SMPL_JOINT_NAMES
from .loft import Loft, Station, arc_length, loft, mirror_x
from .parts import BodyPart

__all__ = ["NUM_BETAS", "SHAPE_DIRECTIONS", "Part", "body_parts", "skeleton"]

#: What one unit of each shape coefficient does (about one standard deviation of adult variation).
SHAPE_DIRECTIONS: tuple[str, ...] = (
    "stature: +4 % overall size, about the pelvis",
    "girth: +10 % thickness of torso, neck and limbs",
    "shoulder_width: each shoulder and arm 1.5 cm further out",
    "leg_length: +5 % thigh and shin",
    "arm_length: +5 % upper arm, forearm and hand",
    "torso_length: +5 % height of everything above the pelvis joint",
    "hip_width: each hip and leg 1.2 cm further out",
    "head_size: +5 % head",
    "chest: +1.5 cm chest depth",
    "belly: +2.5 cm belly depth",
)
NUM_BETAS = len(SHAPE_DIRECTIONS)

_X = (1.0, 0.0, 0.0)
_Y = (0.0, 1.0, 0.0)
_Z = (0.0, 0.0, 1.0)

# Skeleton at beta = 0: midline joints and the left side (the right side mirrors it).
_BASE_JOINTS = {
    "pelvis": (0.0, 0.0, 0.0),
    "spine1": (0.0, 0.11, -0.02),
    "spine2": (0.0, 0.245, -0.01),
    "spine3": (0.0, 0.30, -0.005),
    "neck": (0.0, 0.51, -0.025),
    "head": (0.0, 0.595, 0.0),
    "left_hip": (0.08, -0.09, 0.0),
    "left_knee": (0.095, -0.455, 0.01),
    "left_ankle": (0.09, -0.87, -0.035),
    "left_collar": (0.075, 0.415, -0.02),
    "left_shoulder": (0.19, 0.44, -0.035),
    "left_elbow": (0.455, 0.44, -0.045),
    "left_wrist": (0.71, 0.44, -0.045),
}
_SOLE_BELOW_ANKLE = 0.07
_HAND_DIR = np.array([1.0, -0.04, 0.0]) / np.linalg.norm([1.0, -0.04, 0.0])  # wrist -> fingertips, left
_HAND_JOINT, _HAND_LENGTH = 0.085, 0.188  # distances from the wrist along _HAND_DIR

# Torso cross-sections at beta = 0: height y, half-width, front depth, back depth.
_TORSO_ROWS = np.array(
    [
        (-0.13, 0.135, 0.075, 0.090),
        (-0.08, 0.165, 0.095, 0.115),
        (-0.02, 0.170, 0.100, 0.110),
        (0.05, 0.160, 0.098, 0.095),
        (0.12, 0.145, 0.096, 0.085),
        (0.20, 0.150, 0.104, 0.088),
        (0.27, 0.160, 0.114, 0.092),
        (0.34, 0.168, 0.118, 0.095),
        (0.40, 0.168, 0.105, 0.092),
        (0.45, 0.150, 0.080, 0.080),
        (0.485, 0.110, 0.062, 0.065),
    ]
)
_WAIST_Y = 0.06  # torso above, pelvis (trousers) below, at beta = 0

# Head cross-sections relative to the head joint: height, centre depth z, half-width, front, back.
_HEAD_ROWS = np.array(
    [
        (-0.030, 0.020, 0.042, 0.050, 0.040),
        (-0.005, 0.012, 0.058, 0.070, 0.060),
        (0.030, 0.000, 0.070, 0.085, 0.085),
        (0.070, -0.012, 0.077, 0.090, 0.100),
        (0.110, -0.018, 0.077, 0.087, 0.100),
    ]
)
# Face landmarks relative to the head joint (x, y): eye centre, nose tip, mouth centre; ear (y, z).
_EYE = (0.034, 0.062)
_NOSE_TIP = (0.0, 0.028)
_MOUTH = (0.0, -0.004)
_EAR = (0.045, -0.020)


@dataclass(frozen=True)
class Part:
    """One closed piece of the body.

    mesh: its tube; labels [M] BodyPart values; influences: the joints allowed to skin it; power: the
    sharpness of its distance-based skinning weights; landmarks: named points on it (targets for
    smplx's extra-joint vertices), in the same frame as the mesh.
    """

    name: str
    mesh: Loft
    labels: np.ndarray
    influences: tuple[str, ...]
    power: float
    landmarks: dict[str, np.ndarray]


def skeleton(beta: np.ndarray) -> dict[str, np.ndarray]:
    """The 24 SMPL joints [3] by name, plus the bone end points ``head_top``, ``{side}_fingertip`` and
    ``{side}_toe``, for shape coefficients ``beta`` [NUM_BETAS]."""
    b = np.asarray(beta, dtype=np.float64)
    j = {k: np.array(v) for k, v in _BASE_JOINTS.items()}
    hip_dx, shoulder_dx = 0.012 * b[6], 0.015 * b[2]
    leg, arm, torso, head = 1 + 0.05 * b[3], 1 + 0.05 * b[4], 1 + 0.05 * b[5], 1 + 0.05 * b[7]
    for k in ("left_hip", "left_knee", "left_ankle"):
        j[k][0] += hip_dx
    j["left_knee"] = j["left_hip"] + (j["left_knee"] - j["left_hip"]) * leg
    j["left_ankle"] = j["left_hip"] + (j["left_ankle"] - j["left_hip"]) * leg
    j["left_collar"][0] += 0.5 * shoulder_dx
    for k in ("left_shoulder", "left_elbow", "left_wrist"):
        j[k][0] += shoulder_dx
    for k in ("spine1", "spine2", "spine3", "neck", "head", "left_collar", "left_shoulder", "left_elbow", "left_wrist"):
        j[k][1] *= torso
    for k in ("left_elbow", "left_wrist"):
        j[k] = j["left_shoulder"] + (j[k] - j["left_shoulder"]) * arm
    j["left_hand"] = j["left_wrist"] + _HAND_DIR * _HAND_JOINT * arm
    j["left_fingertip"] = j["left_wrist"] + _HAND_DIR * _HAND_LENGTH * arm
    j["left_foot"] = j["left_ankle"] + np.array([0.013, 0.016 - _SOLE_BELOW_ANKLE, 0.135])
    j["left_toe"] = j["left_ankle"] + np.array([0.017, 0.012 - _SOLE_BELOW_ANKLE, 0.225])
    j["head_top"] = j["head"] + np.array([0.0, 0.165, -0.02]) * head
    for k in [k for k in j if k.startswith("left_")]:
        j["right_" + k[5:]] = j[k] * np.array([-1.0, 1.0, 1.0])
    stature = 1 + 0.04 * b[0]
    return {k: v * stature for k, v in j.items()}


def body_parts(beta: np.ndarray) -> list[Part]:
    """The closed parts of the body for ``beta`` [NUM_BETAS], in a fixed order: torso, neck, head, then
    arm, hand, thumb, leg, foot of the left side, then the same of the right side."""
    b = np.asarray(beta, dtype=np.float64)
    j = skeleton(b * (np.arange(NUM_BETAS) != 0))  # stature is applied last, to everything
    left = [_arm(j, b), _hand(j, b), _thumb(j, b), _leg(j, b), _foot(j, b)]
    parts = [_torso(j, b), _neck(j, b), _head(j, b), *left, *(_mirror(p) for p in left)]
    stature = 1 + 0.04 * b[0]
    return [_scaled(p, stature) for p in parts]


def _tube(stations_of, j: dict[str, np.ndarray], b: np.ndarray, **kwargs) -> Loft:
    """Loft ``stations_of(j, b)``, with each ring where it sits between its stations in the rest shape
    (so rings, and the joints regressed from them, move with the stations as the shape changes)."""
    rest = np.zeros(NUM_BETAS)
    return loft(stations_of(j, b), params=arc_length(stations_of(skeleton(rest), rest)), **kwargs)


def _scaled(part: Part, s: float) -> Part:
    m = part.mesh
    mesh = replace(m, vertices=m.vertices * s, centres=m.centres * s)
    return replace(part, mesh=mesh, landmarks={k: v * s for k, v in part.landmarks.items()})


def _mirror(part: Part) -> Part:
    swap = {n: n.replace("left_", "right_") for n in SMPL_JOINT_NAMES}
    flip = np.array([-1.0, 1.0, 1.0])
    return replace(
        part,
        name=part.name.replace("left_", "right_"),
        mesh=mirror_x(part.mesh),
        influences=tuple(swap[n] for n in part.influences),
        landmarks={k.replace("l", "r", 1) if k[0] == "l" else "R" + k[1:]: v * flip for k, v in part.landmarks.items()},
    )


def _gauss(x, centre, sigma):
    return np.exp(-(((np.asarray(x) - centre) / sigma) ** 2))


def _torso_stations(j: dict[str, np.ndarray], b: np.ndarray) -> list[Station]:
    y0, a0, f0, k0 = _TORSO_ROWS.T
    girth = 1 + 0.1 * b[1]
    y = np.where(y0 > 0, y0 * (1 + 0.05 * b[5]), y0)
    half_width = (
        a0 * girth
        + 0.015 * b[2] * np.clip((y0 - 0.30) / 0.15, 0, 1)
        + 0.012 * b[6] * _gauss(y0, -0.06, 0.08)
        + 0.010 * b[9] * _gauss(y0, 0.12, 0.08)
    )
    front = f0 * girth + 0.015 * b[8] * _gauss(y0, 0.33, 0.06) + 0.025 * b[9] * _gauss(y0, 0.12, 0.08)
    return [Station(np.array([0.0, yy, 0.0]), *r) for yy, r in zip(y, zip(half_width, front, k0 * girth))]


def _torso(j: dict[str, np.ndarray], b: np.ndarray) -> Part:
    mesh = _tube(
        _torso_stations, j, b, ref_u=_X, ref_front=_Z, n_around=36, n_rings=26, caps=(0.05, 0.03), cap_rings=3,
        exponent=2.5,
    )
    waist = _WAIST_Y * (1 + 0.05 * b[5])
    labels = np.where(mesh.vertices[:, 1] > waist, BodyPart.TORSO, BodyPart.PELVIS)
    influences = ("pelvis", "spine1", "spine2", "spine3", "left_collar", "right_collar", "left_hip", "right_hip")
    return Part("torso", mesh, labels, influences, 8.0, {})


def _neck_stations(j: dict[str, np.ndarray], b: np.ndarray) -> list[Station]:
    girth = 1 + 0.1 * b[1]
    top = j["head"] + (j["head"] - j["neck"]) * 0.45
    rows = [(j["neck"] + np.array([0, -0.08, 0.005]), 0.060), (j["neck"], 0.056), (j["head"], 0.052), (top, 0.05)]
    return [Station(c, r * girth, r * girth, r * girth * 1.04) for c, r in rows]


def _neck(j: dict[str, np.ndarray], b: np.ndarray) -> Part:
    mesh = _tube(_neck_stations, j, b, ref_u=_X, ref_front=_Z, n_around=20, n_rings=10, caps=(0.02, 0.02), cap_rings=2)
    labels = np.full(len(mesh.vertices), BodyPart.NECK)
    return Part("neck", mesh, labels, ("spine3", "neck", "head"), 8.0, {})


def _head_stations(j: dict[str, np.ndarray], b: np.ndarray) -> list[Station]:
    size = 1 + 0.05 * b[7]
    return [
        Station(j["head"] + np.array([0.0, y, z]) * size, a * size, f * size, k * size) for y, z, a, f, k in _HEAD_ROWS
    ]


def _head(j: dict[str, np.ndarray], b: np.ndarray) -> Part:
    """An egg with a face: nose, brow, eye sockets, mouth and ears are bumps on the lofted head."""
    size = 1 + 0.05 * b[7]
    origin = j["head"]
    caps = (0.02 * size, 0.055 * size)
    mesh = _tube(_head_stations, j, b, ref_u=_X, ref_front=_Z, n_around=40, n_rings=20, caps=caps, cap_rings=5)
    local = (mesh.vertices - origin) / size  # head-local, beta-free units
    radial = mesh.vertices - mesh.centres[mesh.ring]
    radial[mesh.ring < 0] = 0.0
    direction = radial / np.maximum(np.linalg.norm(radial, axis=1, keepdims=True), 1e-12)
    front = np.clip(direction[:, 2], 0, 1) ** 2
    side = np.clip(np.abs(direction[:, 0]), 0, 1) ** 2
    x, y, z = local.T

    def blob(cx, sx, cy, sy):
        return _gauss(x, cx, sx) * _gauss(y, cy, sy)

    eyes = blob(_EYE[0], 0.011, _EYE[1], 0.011) + blob(-_EYE[0], 0.011, _EYE[1], 0.011)
    dz = front * (
        0.022 * blob(_NOSE_TIP[0], 0.012, _NOSE_TIP[1], 0.012)  # nose tip
        + 0.010 * blob(0.0, 0.009, _NOSE_TIP[1] + 0.025, 0.018)  # nose bridge
        + 0.004 * blob(0.0, 0.05, _EYE[1] + 0.02, 0.008)  # brow ridge
        - 0.005 * eyes  # eye sockets
        - 0.003 * blob(_MOUTH[0], 0.02, _MOUTH[1], 0.004)
    )
    ear = side * _gauss(y, _EAR[0], 0.022) * _gauss(z, _EAR[1], 0.011)
    dx = 0.013 * np.sign(x) * ear
    vertices = mesh.vertices + size * np.stack([dx, np.zeros_like(dx), dz], axis=1)
    mesh = replace(mesh, vertices=vertices)

    labels = np.full(len(vertices), BodyPart.HEAD)
    hairline = np.interp(z, [-0.12, -0.03, 0.02, 0.05], [0.0, 0.02, 0.095, 0.118])
    labels[(y > hairline) & (ear < 0.1)] = BodyPart.HAIR
    is_front = direction[:, 2] > 0.5
    labels[is_front & (np.hypot(np.abs(x) - _EYE[0], y - _EYE[1]) < 0.010)] = BodyPart.EYE
    labels[is_front & (np.abs(x - _MOUTH[0]) < 0.022) & (np.abs(y - _MOUTH[1]) < 0.0055)] = BodyPart.MOUTH

    def on_face(px, py):  # the front-most vertex nearest (px, py) in x, y
        near = np.flatnonzero(np.hypot(x - px, y - py) < 0.012)
        return vertices[near[np.argmax(vertices[near, 2])]]

    landmarks = {
        "nose": vertices[np.argmax(vertices[:, 2])],
        "leye": on_face(_EYE[0], _EYE[1]),
        "reye": on_face(-_EYE[0], _EYE[1]),
        "lear": vertices[np.argmax(np.where(x > 0, ear, -1))],
        "rear": vertices[np.argmax(np.where(x < 0, ear, -1))],
    }
    return Part("head", mesh, labels, ("head",), 8.0, landmarks)


def _arm_stations(j: dict[str, np.ndarray], b: np.ndarray) -> list[Station]:
    girth = 1 + 0.1 * b[1]
    collar, shoulder, elbow, wrist = (j["left_" + k] for k in ("collar", "shoulder", "elbow", "wrist"))
    out = (wrist - elbow) / np.linalg.norm(wrist - elbow)
    rows = [  # centre, half-width (horizontal), depth below, depth above
        (collar - np.array([0.025, 0.0, 0.0]), 0.040, 0.040, 0.040),
        (collar, 0.044, 0.044, 0.044),
        (shoulder, 0.052, 0.048, 0.054),
        (shoulder + 0.12 * (elbow - shoulder), 0.053, 0.048, 0.053),
        (shoulder + 0.45 * (elbow - shoulder), 0.047, 0.046, 0.044),
        (shoulder + 0.80 * (elbow - shoulder), 0.041, 0.040, 0.038),
        (elbow, 0.038, 0.036, 0.036),
        (elbow + 0.25 * (wrist - elbow), 0.042, 0.040, 0.038),
        (elbow + 0.60 * (wrist - elbow), 0.036, 0.032, 0.031),
        (wrist, 0.031, 0.022, 0.022),
        (wrist + 0.02 * out, 0.029, 0.020, 0.020),
    ]
    return [Station(c, a * girth, f * girth, k * girth) for c, a, f, k in rows]


def _arm(j: dict[str, np.ndarray], b: np.ndarray) -> Part:
    down = (0.0, -1.0, 0.0)
    caps = (0.03, 0.012)
    mesh = _tube(_arm_stations, j, b, ref_u=_Z, ref_front=down, n_around=16, n_rings=30, caps=caps, cap_rings=3)
    shoulder, elbow = j["left_shoulder"], j["left_elbow"]
    upper = (mesh.vertices - elbow) @ (shoulder - elbow) > 0
    labels = np.where(upper, BodyPart.UPPER_ARM, BodyPart.FOREARM)
    return Part("left_arm", mesh, labels, ("left_collar", "left_shoulder", "left_elbow", "left_wrist"), 10.0, {})


def _hand_stations(j: dict[str, np.ndarray], b: np.ndarray) -> list[Station]:
    scale = 1 + 0.05 * b[4]
    rows = [  # distance from the wrist along the hand, half-width (across the palm), half-thickness
        (-0.012, 0.029, 0.019),
        (0.025, 0.038, 0.018),
        (0.065, 0.044, 0.016),
        (_HAND_JOINT, 0.045, 0.015),
        (0.110, 0.043, 0.011),
        (0.150, 0.040, 0.010),
        (0.172, 0.036, 0.009),
    ]
    return [Station(j["left_wrist"] + _HAND_DIR * t * scale, a, h, h) for t, a, h in rows]


def _hand(j: dict[str, np.ndarray], b: np.ndarray) -> Part:
    """A mitten, palm down, fingers along +x; the index side faces +z (forward), like the thumb."""
    scale = 1 + 0.05 * b[4]
    mesh = _tube(
        _hand_stations, j, b, ref_u=_Z, ref_front=_Y, n_around=16, n_rings=14, caps=(0.01, 0.016 * scale),
        cap_rings=3, exponent=3.0,
    )
    tip, across = j["left_wrist"] + _HAND_DIR * 0.180 * scale, np.array(_Z)

    def fingertip(offset, back=0.0):  # nearest vertex to a point on the finger end of the mitten
        target = tip + across * offset - _HAND_DIR * back
        return mesh.vertices[np.argmin(np.linalg.norm(mesh.vertices - target, axis=1))]

    landmarks = {
        "lindex": fingertip(0.026, 0.006),
        "lmiddle": fingertip(0.009),
        "lring": fingertip(-0.009, 0.004),
        "lpinky": fingertip(-0.026, 0.016),
    }
    labels = np.full(len(mesh.vertices), BodyPart.HAND)
    return Part("left_hand", mesh, labels, ("left_wrist", "left_hand"), 10.0, landmarks)


def _thumb_stations(j: dict[str, np.ndarray], b: np.ndarray) -> list[Station]:
    scale = 1 + 0.05 * b[4]
    rows = [  # offset from the wrist (along the hand, down, forward), radius
        ((0.015, -0.006, 0.018), 0.014),
        ((0.050, -0.010, 0.045), 0.012),
        ((0.075, -0.011, 0.060), 0.010),
        ((0.090, -0.011, 0.068), 0.0095),
    ]
    return [Station(j["left_wrist"] + np.array(o) * scale, r, r, r) for o, r in rows]


def _thumb(j: dict[str, np.ndarray], b: np.ndarray) -> Part:
    scale = 1 + 0.05 * b[4]
    caps = (0.01, 0.009 * scale)
    mesh = _tube(_thumb_stations, j, b, ref_u=_Y, ref_front=_Z, n_around=8, n_rings=6, caps=caps, cap_rings=2)
    labels = np.full(len(mesh.vertices), BodyPart.HAND)
    return Part("left_thumb", mesh, labels, ("left_wrist", "left_hand"), 10.0, {"lthumb": mesh.vertices[-1]})


def _leg_stations(j: dict[str, np.ndarray], b: np.ndarray) -> list[Station]:
    girth = 1 + 0.1 * b[1]
    hip, knee, ankle = j["left_hip"], j["left_knee"], j["left_ankle"]
    rows = [  # centre, half-width, front depth, back depth
        (hip + np.array([0.0, 0.06, 0.0]), 0.080, 0.080, 0.085),
        (hip, 0.085, 0.085, 0.090),
        (hip + 0.35 * (knee - hip), 0.076, 0.078, 0.076),
        (hip + 0.75 * (knee - hip), 0.060, 0.062, 0.058),
        (knee, 0.052, 0.054, 0.050),
        (knee + 0.25 * (ankle - knee), 0.054, 0.050, 0.064),
        (knee + 0.60 * (ankle - knee), 0.044, 0.040, 0.048),
        (ankle, 0.036, 0.036, 0.036),
        (ankle - np.array([0.0, 0.025, 0.0]), 0.034, 0.034, 0.034),
    ]
    return [Station(c, a * girth, f * girth, k * girth) for c, a, f, k in rows]


def _leg(j: dict[str, np.ndarray], b: np.ndarray) -> Part:
    mesh = _tube(_leg_stations, j, b, ref_u=_X, ref_front=_Z, n_around=20, n_rings=30, caps=(0.03, 0.02), cap_rings=3)
    hip, knee = j["left_hip"], j["left_knee"]
    thigh = (mesh.vertices - knee) @ (hip - knee) > 0
    labels = np.where(thigh, BodyPart.THIGH, BodyPart.SHIN)
    return Part("left_leg", mesh, labels, ("left_hip", "left_knee", "left_ankle"), 10.0, {})


def _foot_stations(j: dict[str, np.ndarray], b: np.ndarray) -> list[Station]:
    ankle = j["left_ankle"]
    sole = ankle[1] - _SOLE_BELOW_ANKLE
    rows = [  # forward of the ankle, half-width, height above the sole, outward shift
        (-0.030, 0.030, 0.085, 0.000),
        (0.010, 0.035, 0.075, 0.003),
        (0.070, 0.042, 0.045, 0.008),
        (0.135, 0.047, 0.032, 0.013),
        (0.185, 0.043, 0.026, 0.016),
        (0.205, 0.038, 0.022, 0.017),
    ]
    return [Station(np.array([ankle[0] + dx, sole + h / 2, ankle[2] + dz]), a, h / 2, h / 2) for dz, a, h, dx in rows]


def _foot(j: dict[str, np.ndarray], b: np.ndarray) -> Part:
    mesh = _tube(
        _foot_stations, j, b, ref_u=_X, ref_front=_Y, n_around=16, n_rings=14, caps=(0.03, 0.02), cap_rings=3,
        exponent=3.0,
    )
    v, ankle = mesh.vertices, j["left_ankle"]

    def nearest(offset):
        return v[np.argmin(np.linalg.norm(v - (ankle + np.array(offset)), axis=1))]

    landmarks = {
        "LBigToe": nearest((-0.010, 0.012 - _SOLE_BELOW_ANKLE, 0.225)),
        "LSmallToe": nearest((0.050, 0.010 - _SOLE_BELOW_ANKLE, 0.195)),
        "LHeel": nearest((0.0, -_SOLE_BELOW_ANKLE, -0.06)),
    }
    labels = np.full(len(v), BodyPart.FOOT)
    return Part("left_foot", mesh, labels, ("left_ankle", "left_foot"), 10.0, landmarks)
