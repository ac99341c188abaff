"""Body models: SMPL's skeleton, the procedural SMPL-format body, loading real SMPL, and LBS helpers.

    from showmaker.body import load_body_model
    body = load_body_model()                       # $SHOWMAKER_SMPL_DIR, else the procedural body
    out = body(pose, betas, scale=s, transl=t)     # pose [B, 24, 3] axis-angle -> out.vertices, out.joints
"""
from .joints import NUM_JOINTS, SMPL_JOINT_NAMES, SMPL_PARENTS, joint_index
from .lbs import (
    axis_angle_to_matrix,
    forward_kinematics,
    linear_blend_skinning,
    linear_blend_skinning_with_rotations,
    matrix_to_axis_angle,
)
from .model import ENV_SMPL_DIR, BodyModel, BodyModelError, BodyOutput, load_body_model
from .parts import BodyPart

__all__ = [
    "ENV_SMPL_DIR",
    "NUM_JOINTS",
    "SMPL_JOINT_NAMES",
    "SMPL_PARENTS",
    "BodyModel",
    "BodyModelError",
    "BodyOutput",
    "BodyPart",
    "axis_angle_to_matrix",
    "forward_kinematics",
    "joint_index",
    "linear_blend_skinning",
    "linear_blend_skinning_with_rotations",
    "load_body_model",
    "matrix_to_axis_angle",
]
