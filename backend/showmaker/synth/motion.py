"""Actor motion: an actor's script (walk, turn, sit_down, gesture, idle) -> SMPL parameters per frame.

Two steps. :func:`plan_script` turns the script into a per-frame *plan* (floor position, heading, how far
seated, gait phase, gesture weight), which needs no body model. :func:`actor_track` turns the plan into SMPL
parameters in the world frame with the body model, such that ``model.forward(pose, betas, scale, transl)``
gives the rendered vertices.

Frames: SMPL's body rest frame is Y up, facing +Z, its left along +X; the world is Z up. Joint 0's rotation
(global orient) is ``Rz(heading + 90 deg) @ Rx(90 deg)``: ``Rx(90 deg)`` stands the body up facing -Y and
``Rz`` turns it to face ``heading`` (degrees counter-clockwise from +X). In SMPL's local joint frames (all
aligned with the rest frame), bending a hip forward or a knee backward is a rotation about x (negative for
a hip, positive for a knee), leaning the trunk forward a positive rotation about x.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from .spec import ActorSpec, SceneSpec, StageSpec

__all__ = ["ActorTrack", "Plan", "actor_track", "plan_script"]

_J = {n: i for i, n in enumerate((
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle", "right_ankle",
    "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand"))}

STRIDE_M = 1.3  # metres per full gait cycle (two steps), for a body of scale 1
RAMP_FRAMES = 5  # frames to blend a gesture or a gait in and out
ARM_DOWN_DEG = 72.0  # arms hang this far below horizontal (T-pose = 0)


def _smooth(x):
    """Smoothstep of ``x`` clipped to [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _angle_lerp(a: float, b: float, t):
    """Interpolate headings in degrees along the shorter way round."""
    d = (b - a + 180.0) % 360.0 - 180.0
    return a + d * t


@dataclass
class Plan:
    """Per-frame actor state (F frames), independent of the body model.

    xy: [F, 2] pelvis floor position (world metres); heading: [F] degrees; sit: [F] 0 standing .. 1 seated;
    phase: [F] gait phase (radians); gait: [F] gait amplitude 0..1; gesture: [F] gesture weight 0..1;
    present: [F] bool, the actor is on stage (rendered).
    """

    xy: np.ndarray
    heading: np.ndarray
    sit: np.ndarray
    phase: np.ndarray
    gait: np.ndarray
    gesture: np.ndarray
    present: np.ndarray


def _seat_point(stage: StageSpec, xy) -> np.ndarray:
    """Where a pelvis ends on the couch for an actor who sits down from ``xy``: keep the position along
    the couch, move onto the seat's centre line (0.2 m in front of the back cushion)."""
    c = stage.couch
    h = math.radians(c.heading_deg)
    fwd, side = np.array([math.cos(h), math.sin(h)]), np.array([-math.sin(h), math.cos(h)])
    rel = np.asarray(xy) - c.center
    back_front = -c.depth / 2 + (c.depth - c.seat_depth)  # the back cushion's front face, along fwd
    return np.asarray(c.center) + side * (rel @ side) + fwd * (back_front + 0.2)


def plan_script(actor: ActorSpec, spec: SceneSpec) -> Plan:
    """Play ``actor.motion`` over ``spec.frame_count`` frames; after the script ends the actor idles."""
    F = spec.frame_count
    xy = np.tile(np.asarray(actor.start, dtype=np.float64), (F, 1))
    heading = np.full(F, actor.heading_deg)
    sit, phase, gait, gesture = np.zeros(F), np.zeros(F), np.zeros(F), np.zeros(F)
    cur_xy, cur_h, cur_sit, cur_phase = np.asarray(actor.start, dtype=np.float64), actor.heading_deg, 0.0, 0.0
    f0 = 0
    for seg in actor.motion:
        n = seg.frames
        t = (np.arange(1, n + 1)) / n  # progress at the end of each frame of the segment
        sl = slice(f0, f0 + n)
        ramp = np.minimum(1.0, np.minimum(np.arange(1, n + 1), np.arange(n, 0, -1)) / RAMP_FRAMES)
        if seg.type == "walk":
            to = np.asarray(seg.to, dtype=np.float64)
            dist = float(np.linalg.norm(to - cur_xy))
            # Trapezoidal speed profile: accelerate over the first 20 %, decelerate over the last 20 %.
            a = 0.2
            prog = np.where(t < a, t * t / (2 * a * (1 - a)),
                            np.where(t > 1 - a, 1 - (1 - t) ** 2 / (2 * a * (1 - a)), (t - a / 2) / (1 - a)))
            xy[sl] = cur_xy + prog[:, None] * (to - cur_xy)
            target_h = math.degrees(math.atan2(*(to - cur_xy)[::-1])) if dist > 1e-6 else cur_h
            heading[sl] = _angle_lerp(cur_h, target_h, _smooth(t * n / min(n, 6)))
            phase[sl] = cur_phase + 2 * math.pi * prog * dist / (STRIDE_M * actor.scale)
            gait[sl] = ramp * min(1.0, dist / 0.3)
            cur_xy, cur_h, cur_phase = to, target_h, float(phase[f0 + n - 1])
        elif seg.type == "turn":
            heading[sl] = _angle_lerp(cur_h, seg.heading_deg, _smooth(t))
            turned = abs((seg.heading_deg - cur_h + 180.0) % 360.0 - 180.0)
            phase[sl] = cur_phase + 2 * math.pi * _smooth(t) * turned / 180.0  # a step per 90 degrees
            gait[sl] = 0.35 * ramp * min(1.0, turned / 45.0)
            xy[sl] = cur_xy
            cur_h, cur_phase = seg.heading_deg, float(phase[f0 + n - 1])
        elif seg.type == "sit_down":
            seat = _seat_point(spec.stage, cur_xy)
            s = _smooth(t)
            sit[sl] = s
            xy[sl] = cur_xy + _smooth((t - 0.15) / 0.85)[:, None] * (seat - cur_xy)
            heading[sl] = cur_h
            cur_xy, cur_sit = seat, 1.0
        else:  # gesture, idle
            xy[sl] = cur_xy
            heading[sl] = cur_h
            if seg.type == "gesture":
                gesture[sl] = ramp
        if seg.type != "sit_down":
            sit[sl] = cur_sit
        if seg.type not in ("walk", "turn"):
            phase[sl] = cur_phase
        f0 += n
    xy[f0:], heading[f0:], sit[f0:], phase[f0:] = cur_xy, cur_h, cur_sit, cur_phase
    present = np.ones(F, dtype=bool)
    if actor.on_stage is not None:
        present[:] = False
        present[actor.on_stage[0]: actor.on_stage[1] + 1] = True
    return Plan(xy, heading, sit, phase, gait, gesture, present)


def _rot(axis: str, angle) -> np.ndarray:
    """Rotation matrices [F, 3, 3] about a local axis by ``angle`` [F] radians."""
    return Rotation.from_euler(axis, np.asarray(angle, dtype=np.float64)[:, None]).as_matrix()


def local_pose(plan: Plan, fps: float, rest_joints: np.ndarray) -> np.ndarray:
    """Body joint rotations (joints 1..23) as matrices [F, 24, 3, 3] (joint 0 left as identity).

    rest_joints: [24, 3] rest-pose joint positions of the body (SMPL rest frame), used to hang the arms from
    whatever angle they have at rest.
    """
    F = len(plan.xy)
    t = np.arange(F) / fps
    R = np.tile(np.eye(3), (F, 24, 1, 1))
    ph, g, s, w = plan.phase, plan.gait * (1.0 - plan.sit), plan.sit, plan.gesture
    bend = np.sin(math.pi * s)  # 1 in the middle of sitting down: lean forward, arms forward
    for side, sgn in (("left", 1.0), ("right", -1.0)):
        p = ph if side == "left" else ph + math.pi
        hip = -0.42 * g * np.sin(p) - (math.pi / 2) * s
        knee = g * (0.08 + 0.7 * np.maximum(0.0, np.cos(p)) ** 1.5) + (math.pi / 2) * s
        ankle = 0.2 * g * np.sin(p - 0.6)
        R[:, _J[f"{side}_hip"]] = _rot("x", hip) @ _rot("z", -0.04 * sgn * np.ones(F))
        R[:, _J[f"{side}_knee"]] = _rot("x", knee)
        R[:, _J[f"{side}_ankle"]] = _rot("x", ankle)
        # Arms: hang from the rest angle, swing against the legs, rest on the thighs when seated.
        sh, el = rest_joints[_J[f"{side}_shoulder"]], rest_joints[_J[f"{side}_elbow"]]
        rest_deg = math.degrees(math.atan2(el[1] - sh[1], abs(el[0] - sh[0])))  # + above horizontal
        down = math.radians(ARM_DOWN_DEG + rest_deg) * -sgn  # about z: left arm (+x) down is negative
        swing = 0.35 * g * np.sin(p) - 0.5 * s - 0.5 * bend
        lift = np.zeros(F)
        elbow = 0.25 + 0.25 * g + 0.8 * s + 0.3 * bend
        if side == "right":  # the talking hand
            wave = np.sin(2 * math.pi * 0.9 * t)
            lift = w * (0.55 + 0.15 * wave)
            swing = swing - w * (0.7 + 0.25 * np.sin(2 * math.pi * 0.6 * t))
            elbow = elbow + w * (0.9 + 0.35 * wave)
        else:
            swing = swing - w * 0.2 * (1 + np.sin(2 * math.pi * 0.5 * t + 1.0))
            elbow = elbow + w * 0.4
        R[:, _J[f"{side}_shoulder"]] = _rot("x", swing) @ _rot("z", down + sgn * lift)
        R[:, _J[f"{side}_elbow"]] = _rot("y", -sgn * elbow)
    breathe = 0.03 * np.sin(2 * math.pi * 0.3 * t)
    R[:, _J["spine1"]] = _rot("x", 0.05 * g + 0.45 * bend + breathe) @ _rot("y", 0.12 * g * np.sin(ph))
    R[:, _J["spine2"]] = _rot("x", 0.15 * bend - 0.05 * s)
    nod = w * 0.12 * np.sin(2 * math.pi * 0.8 * t) - 0.15 * bend
    look = w * 0.25 * np.sin(2 * math.pi * 0.35 * t)
    R[:, _J["head"]] = _rot("x", nod) @ _rot("y", look)
    return R


def global_orient(heading_deg) -> np.ndarray:
    """Joint 0 rotations [F, 3, 3]: stand the Y-up SMPL body up in the Z-up world, facing ``heading_deg``."""
    return _rot("z", np.radians(np.asarray(heading_deg, dtype=np.float64) + 90.0)) @ Rotation.from_euler(
        "x", 90, degrees=True).as_matrix()


@dataclass
class ActorTrack:
    """SMPL parameters of one actor in the world frame (F frames), such that
    ``model.forward(pose, betas, scale, transl).vertices`` are the rendered vertices.

    pose: [F, 24, 3] axis-angle (joint 0 = global orient, Y-up body into the Z-up world);
    betas: [10]; scale: float; transl: [F, 3] metres; present: [F] bool (on stage);
    vertices: [F, V, 3] and joints: [F, 24, 3] world metres.
    """

    pose: np.ndarray
    betas: np.ndarray
    scale: float
    transl: np.ndarray
    present: np.ndarray
    vertices: np.ndarray
    joints: np.ndarray


def _forward(model, pose, betas, scale, transl):
    import torch

    F = len(pose)
    with torch.no_grad():
        out = model.forward(
            torch.as_tensor(pose, dtype=torch.float32),
            torch.as_tensor(np.tile(betas, (F, 1)), dtype=torch.float32),
            torch.full((F,), float(scale)),
            torch.as_tensor(transl, dtype=torch.float32),
        )
    return out.vertices.numpy().astype(np.float64), out.joints.numpy().astype(np.float64)


def actor_track(actor: ActorSpec, spec: SceneSpec, model) -> ActorTrack:
    """SMPL parameters per frame for ``actor`` (see :class:`ActorTrack`).

    Placement: the pelvis is above the plan's floor point; standing, the lowest vertex touches the floor
    (z = 0); seated, the lowest buttock/thigh vertex touches the couch seat; in between the two blend.
    """
    from ..body.parts import BodyPart

    plan = plan_script(actor, spec)
    F = len(plan.xy)
    betas = np.asarray(actor.betas, dtype=np.float64)
    rest_pose = np.zeros((1, 24, 3))
    _, rest_joints = _forward(model, rest_pose, betas, 1.0, np.zeros((1, 3)))
    R = local_pose(plan, spec.fps, rest_joints[0])
    R[:, 0] = global_orient(plan.heading)
    pose = Rotation.from_matrix(R.reshape(-1, 3, 3)).as_rotvec().reshape(F, 24, 3)
    verts, joints = _forward(model, pose, betas, actor.scale, np.zeros((F, 3)))
    labels = np.asarray(model.part_labels)
    seat_verts = np.isin(labels, [BodyPart.PELVIS, BodyPart.THIGH])
    z_stand = -verts[:, :, 2].min(1)
    z_seat = spec.stage.couch.seat_height - verts[:, seat_verts, 2].min(1)
    w = _smooth((plan.sit - 0.3) / 0.6)
    transl = np.zeros((F, 3))
    transl[:, :2] = plan.xy - joints[:, 0, :2]
    transl[:, 2] = (1 - w) * z_stand + w * z_seat
    verts += transl[:, None]
    joints += transl[:, None]
    return ActorTrack(pose, betas, float(actor.scale), transl, plan.present, verts, joints)
