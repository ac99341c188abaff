"""The on-disk format of a synthetic clip and its one reader, :func:`load_clip` (no Blender needed).

Layout of a clip directory (all arrays little-endian numpy; details in ``docs/synthetic_clip.md``)::

    meta.json        format, version, key, spec, sizes, fps, actor names, cuts, codec, timing (written last)
    frames/%06d.png  F frames, 8-bit sRGB
    clip.mp4         the same frames, H.264 yuv420p
    cameras.npz      K [F,3,3], viewmats [F,4,4] (OpenCV world-to-camera), shot_ids [F], camera_ids [F], cuts [S-1]
    depth.npy        float32 [F,H,W] planar camera z in metres, +inf where no surface (background)
    masks.npz        masks uint8 [F,H,W]: 0 stage/background, i + 1 actor i
    smpl.npz         pose [A,F,24,3], betas [A,10], scale [A], transl [A,F,3], present [A,F], joints [A,F,24,3]
    joints2d.npz     joints2d [A,F,24,2], joint_in_frame [A,F,24], joint_visible [A,F,24],
                     in_frame_fraction [A,F], occluded_fraction [A,F]
    body.npz         faces [T,3], part_labels [V] of the body model the actors were posed with
    stage.ply        the stage mesh, world frame, metres (triangles, sRGB vertex colours)
    background/%06d.png          B background images of the set (no actors), 8-bit sRGB (only when B > 0)
    background_cameras.npz       K [B,3,3], viewmats [B,4,4] of the background images (only when B > 0)
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .spec import SceneSpec, parse_spec

__all__ = ["BACKGROUND_CAMERAS", "BACKGROUND_DIR", "CLIP_FORMAT", "CLIP_VERSION", "FrameSequence", "SynthClip",
           "is_complete_clip", "load_clip"]

CLIP_FORMAT = "showmaker-synth-clip"
CLIP_VERSION = 1
META = "meta.json"
FRAMES_DIR = "frames"
VIDEO = "clip.mp4"
STAGE_MESH = "stage.ply"
BACKGROUND_DIR = "background"
BACKGROUND_CAMERAS = "background_cameras.npz"
ARRAY_FILES = ("cameras.npz", "depth.npy", "masks.npz", "smpl.npz", "joints2d.npz", "body.npz")


def frame_name(i: int) -> str:
    """File name of frame ``i`` (0-based) inside ``frames/``."""
    return f"{i:06d}.png"


class FrameSequence(Sequence):
    """The clip's frames, loaded lazily: ``frames[i]`` -> [H, W, 3] uint8 sRGB."""

    def __init__(self, directory: Path, count: int):
        self.directory, self.count = directory, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i):
        if isinstance(i, slice):
            return np.stack([self[j] for j in range(*i.indices(self.count))])
        if not -self.count <= i < self.count:
            raise IndexError(f"frame {i} out of range for a clip of {self.count} frames")
        with Image.open(self.directory / frame_name(i % self.count)) as im:
            return np.asarray(im.convert("RGB"))

    def path(self, i: int) -> Path:
        """The PNG file of frame ``i``."""
        return self.directory / frame_name(i)


@dataclass
class SynthClip:
    """A synthetic clip with its ground truth (F frames, A actors, H x W pixels).

    frames: lazy [H, W, 3] uint8 frames; K [F, 3, 3]; viewmats [F, 4, 4] world-to-camera (OpenCV);
    depth [F, H, W] float32 planar camera z (metres, +inf background; memory-mapped); masks [F, H, W] uint8
    (0 stage, i + 1 actor i); smpl: pose [A, F, 24, 3], betas [A, 10], scale [A], transl [A, F, 3], present
    [A, F] bool, joints [A, F, 24, 3] (world); joints2d [A, F, 24, 2] pixels (centres at +0.5) with
    joint_in_frame / joint_visible [A, F, 24]; in_frame_fraction / occluded_fraction [A, F]; shot_ids [F];
    camera_ids [F]; cuts: first frame of each shot after the first; body_faces [T, 3] and body_part_labels [V];
    background_images: lazy [h, w, 3] uint8 images of the set without actors (B of them, possibly 0), taken by
    cameras background_K [B, 3, 3] / background_viewmats [B, 4, 4] (world-to-camera, OpenCV).
    """

    path: Path
    spec: SceneSpec
    meta: dict[str, Any]
    frames: FrameSequence
    K: np.ndarray
    viewmats: np.ndarray
    depth: np.ndarray
    masks: np.ndarray
    smpl: dict[str, np.ndarray]
    joints2d: np.ndarray
    joint_in_frame: np.ndarray
    joint_visible: np.ndarray
    in_frame_fraction: np.ndarray
    occluded_fraction: np.ndarray
    shot_ids: np.ndarray
    camera_ids: np.ndarray
    cuts: list[int]
    body_faces: np.ndarray
    body_part_labels: np.ndarray
    background_images: FrameSequence
    background_K: np.ndarray
    background_viewmats: np.ndarray

    @property
    def background_dir(self) -> Path:
        """The folder of the background images (``background/``; absent when the clip has none)."""
        return self.path / BACKGROUND_DIR

    @property
    def background_paths(self) -> list[Path]:
        """The PNG files of the background images, in order (empty when the clip has none)."""
        return [self.background_images.path(i) for i in range(len(self.background_images))]

    @property
    def fps(self) -> float:
        return float(self.meta["fps"])

    @property
    def frame_count(self) -> int:
        return len(self.frames)

    @property
    def actor_names(self) -> list[str]:
        return list(self.meta["actors"])

    @property
    def video_path(self) -> Path:
        return self.path / VIDEO

    @property
    def stage_mesh_path(self) -> Path:
        return self.path / STAGE_MESH

    @property
    def floor(self) -> tuple[np.ndarray, float]:
        """Floor plane as (unit normal (3,), offset): points p on it satisfy normal . p = offset."""
        f = self.meta["floor"]
        return np.asarray(f["normal"], dtype=np.float64), float(f["offset"])


def read_meta(path: str | Path) -> dict[str, Any] | None:
    """A clip directory's meta.json, or None when it has none (an unfinished clip)."""
    p = Path(path) / META
    if not p.is_file():
        return None
    return json.loads(p.read_text(encoding="utf-8"))


def is_complete_clip(path: str | Path, key: str | None = None) -> bool:
    """True when ``path`` holds a finished clip (its meta.json is written last), with cache ``key`` if given."""
    meta = read_meta(path)
    return bool(meta) and meta.get("format") == CLIP_FORMAT and (key is None or meta.get("key") == key)


def load_clip(path: str | Path) -> SynthClip:
    """Read a clip written by :func:`showmaker.synth.generate_clip` (see the module docstring for the layout)."""
    path = Path(path)
    meta = read_meta(path)
    if meta is None:
        raise FileNotFoundError(f"{path}: no {META}; not a synthetic clip, or its generation did not finish")
    if meta.get("format") != CLIP_FORMAT:
        raise ValueError(f"{path / META}: format is {meta.get('format')!r}, expected {CLIP_FORMAT!r}")
    if meta.get("version") != CLIP_VERSION:
        raise ValueError(f"{path / META}: clip format version {meta.get('version')} is not supported "
                         f"(this reader reads version {CLIP_VERSION}); regenerate the clip")
    with np.load(path / "cameras.npz") as cam, np.load(path / "masks.npz") as m, \
            np.load(path / "smpl.npz") as s, np.load(path / "joints2d.npz") as j, np.load(path / "body.npz") as b:
        cam, masks, smpl, j2d, body = dict(cam), m["masks"], dict(s), dict(j), dict(b)
    if (path / BACKGROUND_CAMERAS).is_file():  # clips without background images have neither file
        with np.load(path / BACKGROUND_CAMERAS) as bg:
            bg_K, bg_viewmats = bg["K"], bg["viewmats"]
    else:
        bg_K, bg_viewmats = np.zeros((0, 3, 3)), np.zeros((0, 4, 4))
    return SynthClip(
        path=path,
        spec=parse_spec(meta["spec"]),
        meta=meta,
        frames=FrameSequence(path / FRAMES_DIR, int(meta["frame_count"])),
        K=cam["K"],
        viewmats=cam["viewmats"],
        depth=np.load(path / "depth.npy", mmap_mode="r"),
        masks=masks,
        smpl=smpl,
        joints2d=j2d["joints2d"],
        joint_in_frame=j2d["joint_in_frame"],
        joint_visible=j2d["joint_visible"],
        in_frame_fraction=j2d["in_frame_fraction"],
        occluded_fraction=j2d["occluded_fraction"],
        shot_ids=cam["shot_ids"],
        camera_ids=cam["camera_ids"],
        cuts=[int(c) for c in cam["cuts"]],
        body_faces=body["faces"],
        body_part_labels=body["part_labels"],
        background_images=FrameSequence(path / BACKGROUND_DIR, len(bg_K)),
        background_K=bg_K,
        background_viewmats=bg_viewmats,
    )
