"""``generate_clip``: render a scene spec with Blender and write the clip and its ground truth, cached.

A clip is written into a hidden sibling directory and renamed into place when complete, with every file
written atomically and ``meta.json`` last; an unfinished clip is never mistaken for a finished one.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..atomic import atomic_save_npz, atomic_write_bytes, atomic_write_json, fsync_dir
from ..geometry import project_points
from .background import background_cameras, background_size
from .clip import (BACKGROUND_CAMERAS, BACKGROUND_DIR, CLIP_FORMAT, CLIP_VERSION, FRAMES_DIR, STAGE_MESH, VIDEO,
                   frame_name, is_complete_clip, read_meta)
from .motion import ActorTrack, actor_track
from .shots import CameraTrack, camera_track
from .spec import SceneSpec, default_spec
from .stage import build_stage, stage_mesh
from .truth import actor_visibility
from .video import write_mp4

__all__ = ["GENERATOR_VERSION", "Prepared", "cache_root", "clip_key", "generate_clip", "prepare", "procedural_body"]

#: Bump whenever the renderer or the ground truth changes, so cached clips regenerate.
#: 2: background images of the set (``spec.background``).
GENERATOR_VERSION = 2

log = logging.getLogger(__name__)


def cache_root() -> Path:
    """``$SHOWMAKER_CACHE/synth`` (default ``~/.cache/showmaker/synth``)."""
    base = os.environ.get("SHOWMAKER_CACHE") or Path.home() / ".cache" / "showmaker"
    return Path(base) / "synth"


def _body_fingerprint(model) -> str:
    """SHA-256 prefix of the body model's file (shape, skinning, joints, faces and part labels)."""
    return hashlib.sha256(Path(model.source).read_bytes()).hexdigest()[:16]


def clip_key(spec: SceneSpec, model) -> str:
    """Cache key: 16 hex digits hashing the spec, the generator version, the body model and Blender's version."""
    import bpy

    blob = json.dumps({"spec": spec.to_dict(), "generator": GENERATOR_VERSION, "body": _body_fingerprint(model),
                       "blender": bpy.app.version_string}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def procedural_body():
    """The project's procedural body model: clips never depend on the user's SMPL files
    (``$SHOWMAKER_SMPL_DIR``), and its part labels paint the clothing."""
    from ..body.model import BodyModel, read_model_file
    from ..body.procedural import ensure_procedural_model

    path = ensure_procedural_model()
    return BodyModel(read_model_file(path), path)


class Prepared:
    """Everything a clip is rendered from, before Blender: body model, actor tracks, cameras, stage parts."""

    def __init__(self, spec: SceneSpec, model=None):
        self.spec = spec
        self.model = model if model is not None else procedural_body()
        self.faces = np.asarray(self.model.faces, dtype=np.int64)
        self.part_labels = np.asarray(self.model.part_labels)
        self.tracks: list[ActorTrack] = [actor_track(a, spec, self.model) for a in spec.actors]
        self.cameras: CameraTrack = camera_track(spec)
        #: Background images' cameras: K [B, 3, 3], viewmats [B, 4, 4] (B = spec.background.count).
        self.background_K, self.background_viewmats = background_cameras(spec)
        self.parts = build_stage(spec.stage, spec.seed)

    def renderer(self, threads: int | None = None):
        """A :class:`~showmaker.synth.blender_scene.BlenderClipRenderer` of this clip (resets Blender)."""
        from .blender_scene import BlenderClipRenderer, face_slots

        return BlenderClipRenderer(self.spec, self.parts, self.tracks, self.faces,
                                   face_slots(self.faces, self.part_labels), self.cameras,
                                   threads or os.cpu_count() or 1)


def prepare(spec: SceneSpec, model=None) -> Prepared:
    """Plan a clip (tracks, cameras, stage) without rendering it."""
    return Prepared(spec, model)


def _png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _npz_compressed_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


@dataclass
class _Rendered:
    """Per-frame outputs of a render pass (F frames, A actors); see :class:`~showmaker.synth.clip.SynthClip`."""

    depth: np.ndarray
    masks: np.ndarray
    joints2d: np.ndarray
    joint_in_frame: np.ndarray
    joint_visible: np.ndarray
    in_frame_fraction: np.ndarray
    occluded_fraction: np.ndarray
    timing: dict


def _render(prep: Prepared, frames_dir: Path, threads: int | None, progress: bool) -> _Rendered:
    """Render every frame into ``frames_dir`` (PNG) and gather depth, masks and per-actor visibility."""
    spec, cams, tracks = prep.spec, prep.cameras, prep.tracks
    F, A, H, W = spec.frame_count, len(tracks), spec.height, spec.width
    out = _Rendered(np.empty((F, H, W), np.float32), np.empty((F, H, W), np.uint8), np.zeros((A, F, 24, 2), np.float32),
                    np.zeros((A, F, 24), bool), np.zeros((A, F, 24), bool), np.zeros((A, F), np.float32),
                    np.zeros((A, F), np.float32), {})
    for a, tr in enumerate(tracks):  # absent actors get their projected joints too (with all flags False)
        out.joints2d[a] = project_points(tr.joints, cams.viewmats, cams.K)[0]
    t0 = time.perf_counter()
    renderer = prep.renderer(threads)
    t_build, c0 = time.perf_counter() - t0, time.process_time()
    try:
        for f in tqdm(range(F), desc="synth: rendering", unit="frame", disable=not progress):
            r = renderer.render(f)
            atomic_write_bytes(frames_dir / frame_name(f), _png_bytes(r.rgb))
            out.depth[f], out.masks[f] = r.depth, r.mask
            for a in np.flatnonzero([tr.present[f] for tr in tracks]):
                tr = tracks[a]
                v = actor_visibility(a + 1, tr.vertices[f], prep.faces, tr.joints[f], cams.K[f], cams.viewmats[f],
                                     r.depth, r.mask)
                out.joint_in_frame[a, f], out.joint_visible[a, f] = v.joint_in_frame, v.joint_visible
                out.in_frame_fraction[a, f], out.occluded_fraction[a, f] = v.in_frame_fraction, v.occluded_fraction
        t_bg = _render_background(prep, renderer, frames_dir.parent / BACKGROUND_DIR, progress)
    finally:
        renderer.close()
    t_render, c_render = time.perf_counter() - t0 - t_build - t_bg[0], time.process_time() - c0 - t_bg[1]
    out.timing = {"build": round(t_build, 2), "render": round(t_render, 2), "per_frame": round(t_render / F, 3),
                  "render_cpu": round(c_render, 2), "per_frame_cpu": round(c_render / F, 3),
                  "threads": renderer.threads}
    if prep.spec.background.count:
        out.timing["background"] = round(t_bg[0], 2)
        out.timing["background_cpu"] = round(t_bg[1], 2)
    return out


def _render_background(prep: Prepared, renderer, out_dir: Path, progress: bool) -> tuple[float, float]:
    """Render the background images (the set without actors) into ``out_dir``; (wall, CPU) seconds."""
    B = prep.spec.background.count
    if B == 0:
        return 0.0, 0.0
    t0, c0 = time.perf_counter(), time.process_time()
    out_dir.mkdir(parents=True)
    W, H = background_size(prep.spec)
    for i in tqdm(range(B), desc="synth: background", unit="image", disable=not progress):
        r = renderer.render_empty_set(prep.background_K[i], prep.background_viewmats[i], W, H)
        atomic_write_bytes(out_dir / frame_name(i), _png_bytes(r.rgb))
    return time.perf_counter() - t0, time.process_time() - c0


def _write_clip(prep: Prepared, work: Path, key: str, threads: int | None, progress: bool) -> dict:
    """Render and write every file of the clip into ``work``; returns the meta.json content (not written)."""
    import bpy

    spec, cams, tracks = prep.spec, prep.cameras, prep.tracks
    F, A = spec.frame_count, len(tracks)
    (work / FRAMES_DIR).mkdir(parents=True)
    r = _render(prep, work / FRAMES_DIR, threads, progress)
    codec = write_mp4(work / VIDEO, (np.asarray(Image.open(work / FRAMES_DIR / frame_name(f)).convert("RGB"))
                                     for f in range(F)), spec.fps, spec.width, spec.height)
    atomic_save_npz(work / "cameras.npz", K=cams.K, viewmats=cams.viewmats, shot_ids=cams.shot_ids.astype(np.int32),
                    camera_ids=cams.camera_ids.astype(np.int32), cuts=np.asarray(cams.cuts, dtype=np.int32))
    if spec.background.count:
        atomic_save_npz(work / BACKGROUND_CAMERAS, K=prep.background_K, viewmats=prep.background_viewmats)
    atomic_write_bytes(work / "depth.npy", _npy_bytes(r.depth))
    atomic_write_bytes(work / "masks.npz", _npz_compressed_bytes(masks=r.masks))

    def stack(name: str, shape: tuple, dtype) -> np.ndarray:
        return np.asarray([getattr(t, name) for t in tracks], dtype=dtype).reshape((A,) + shape)

    atomic_save_npz(work / "smpl.npz", pose=stack("pose", (F, 24, 3), np.float32),
                    betas=stack("betas", (10,), np.float32), scale=stack("scale", (), np.float32),
                    transl=stack("transl", (F, 3), np.float32), present=stack("present", (F,), bool),
                    joints=stack("joints", (F, 24, 3), np.float32))
    atomic_save_npz(work / "joints2d.npz", joints2d=r.joints2d, joint_in_frame=r.joint_in_frame,
                    joint_visible=r.joint_visible, in_frame_fraction=r.in_frame_fraction,
                    occluded_fraction=r.occluded_fraction)
    atomic_save_npz(work / "body.npz", faces=prep.faces, part_labels=prep.part_labels)
    atomic_write_bytes(work / STAGE_MESH, stage_mesh(prep.parts).export(file_type="ply"))
    return {
        "format": CLIP_FORMAT,
        "version": CLIP_VERSION,
        "key": key,
        "generator_version": GENERATOR_VERSION,
        "blender": bpy.app.version_string,
        "spec": spec.to_dict(),
        "width": spec.width,
        "height": spec.height,
        "fps": spec.fps,
        "frame_count": F,
        "actors": [a.name for a in spec.actors],
        "cameras": [c.name for c in spec.cameras],
        "cuts": cams.cuts,
        "background": {"count": spec.background.count, "width": background_size(spec)[0],
                       "height": background_size(spec)[1]},
        "video_codec": codec,
        "depth": {"kind": "planar_z", "units": "metres", "background": "inf"},
        "floor": {"normal": [0.0, 0.0, 1.0], "offset": 0.0},
        "timing_s": r.timing,
    }


def generate_clip(spec: SceneSpec | None = None, out_dir: str | os.PathLike | None = None, *,
                  threads: int | None = None, progress: bool = False, model=None) -> Path:
    """Render ``spec`` (default: the packaged default scene) unless it is already there; return its directory.

    ``out_dir`` is the clip directory (default ``cache_root() / clip_key(spec)``); an existing finished clip
    of the same key is reused, one of another key is replaced, anything else there is an error. ``threads``:
    Cycles CPU threads (default: all cores). ``model``: a body model with part labels (default
    :func:`procedural_body`).
    """
    spec = spec or default_spec()
    prep = Prepared(spec, model)
    key = clip_key(spec, prep.model)
    out = Path(out_dir) if out_dir is not None else cache_root() / key
    if is_complete_clip(out, key):
        return out
    if out.exists() and any(out.iterdir()) and read_meta(out) is None:
        raise FileExistsError(f"{out}: exists and is not a synthetic clip; choose an empty or new directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.partial-{secrets.token_hex(4)}"
    try:
        t0 = time.perf_counter()
        meta = _write_clip(prep, work, key, threads, progress)
        meta["timing_s"]["total"] = round(time.perf_counter() - t0, 2)
        meta["bytes"] = sum(p.stat().st_size for p in work.rglob("*") if p.is_file())
        atomic_write_json(work / "meta.json", meta)
        if is_complete_clip(out, key):  # another process finished first
            shutil.rmtree(work)
            return out
        if out.exists():
            old = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
            os.replace(out, old)
            shutil.rmtree(old)
        os.replace(work, out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    log.info("synthetic clip %s: %d frames in %.1f s, %.1f MB", out, spec.frame_count,
             meta["timing_s"]["total"], meta["bytes"] / 1e6)
    return out
