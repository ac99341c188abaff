"""The SMPL skeleton: 24 joint names and the kinematic tree, shared by every body model.

Joint ``i``'s parent is ``SMPL_PARENTS[i]`` (``-1`` for the root); parents always come before their
children, so a single pass in index order visits every parent first. "left" is the body's own left,
which is +x in the rest pose (the body faces +z with +y up).
"""
from __future__ import annotations

import numpy as np

__all__ = ["NUM_JOINTS", "SMPL_JOINT_NAMES", "SMPL_PARENTS", "joint_index"]

SMPL_JOINT_NAMES: tuple[str, ...] = (
    "pelvis",
    "left_hip",
    "right_hip",
    "spine1",
    "left_knee",
    "right_knee",
    "spine2",
    "left_ankle",
    "right_ankle",
    "spine3",
    "left_foot",
    "right_foot",
    "neck",
    "left_collar",
    "right_collar",
    "head",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hand",
    "right_hand",
)

NUM_JOINTS = len(SMPL_JOINT_NAMES)

#: Parent of each joint (the first row of SMPL's ``kintree_table``), int64 [24].
SMPL_PARENTS = np.array(
    [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21], dtype=np.int64
)
SMPL_PARENTS.setflags(write=False)

_INDEX = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}


def joint_index(name: str) -> int:
    """Index of the SMPL joint called ``name`` (e.g. ``"left_elbow"`` -> 18)."""
    try:
        return _INDEX[name]
    except KeyError:
        raise KeyError(f"unknown SMPL joint {name!r}; the names are {', '.join(SMPL_JOINT_NAMES)}") from None
