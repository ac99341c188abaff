"""Per-vertex body-part labels of the procedural body (the ``part_labels`` key of its model file).

A renderer paints clothing from these: e.g. shirt = TORSO + UPPER_ARM, trousers = PELVIS + THIGH + SHIN,
shoes = FOOT, skin = HEAD + NECK + FOREARM + HAND, plus HAIR, EYE and MOUTH on the head. The integer
values are stored in files: append new parts, never renumber.
"""
from __future__ import annotations

import enum

__all__ = ["BodyPart"]


class BodyPart(enum.IntEnum):
    HEAD = 0  # facial and scalp skin not covered by hair
    HAIR = 1
    EYE = 2
    MOUTH = 3
    NECK = 4
    TORSO = 5  # chest, back and belly down to the waist
    PELVIS = 6  # hips and buttocks, below the waist
    UPPER_ARM = 7  # shoulder to elbow
    FOREARM = 8  # elbow to wrist
    HAND = 9
    THIGH = 10  # hip to knee
    SHIN = 11  # knee to ankle
    FOOT = 12
