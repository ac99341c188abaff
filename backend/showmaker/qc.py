"""Quality control: contact sheets that let a TD check every estimate before trusting it.

    showmaker qc PROJECT [--out DIR] [--frames-per-shot N]

``write_contact_sheets(project_dir)`` reads whatever stage outputs exist in a project directory and writes PNGs
(default into ``PROJECT/qc/``):

* ``shot_000.png``, ``shot_001.png``, ...: one contact sheet per shot. Its tiles are the shot's cut frames (its
  first frame and the previous shot's last frame), frames sampled evenly through the shot, and the frames on
  either side of a ground-truth cut that falls inside the shot (a missed cut). Each tile is the frame with the
  instance masks tinted per id, the people estimator's 2D keypoints and boxes, the fitted SMPL skeleton
  (``smpl_init``'s camera-frame joints projected with the frame's K), and a caption (frame index, time, shot,
  role, camera registration). With ground truth, the true frame, masks and joints are drawn beside each tile.
* ``cameras_top.png``: the stage points and the registered cameras seen from above, the unregistered frames
  listed, and the ground-truth camera centres after a similarity alignment when ground truth exists.

A stage that is absent (or unreadable) is named in the sheets' captions; nothing else is required. Every PNG
carries a ``showmaker-qc`` text chunk (JSON: the tiles' frames and pixel boxes, what was missing), so tools
and tests can find the tiles. Files and layout: ``docs/qc.md``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw

from . import qc_draw as qd
from .atomic import atomic_write_bytes
from .body.joints import SMPL_PARENTS

__all__ = ["QC_DIR", "add_arguments", "load_project_data", "qc_main", "run", "write_contact_sheets"]

#: Default output folder inside the project.
QC_DIR = "qc"
#: The PNG text chunk holding each sheet's layout (JSON).
META_KEY = "showmaker-qc"

_PAD = 10          # sheet margin
_GAP = 12          # between tile groups
_PANEL_GAP = 3     # between an estimate tile and its ground-truth tile
_BORDER = 3        # cut border width
_MIN_TILE_W = 256  # small frames are enlarged to this width (captions need room)
_MAX_TILE_W = 480
_MAX_TILE_H = 400


# ================================================================================================ loading
@dataclass
class StageStatus:
    """One line of the 'what exists' summary: ``name``, whether it is usable, and a short text."""

    name: str
    ok: bool
    text: str


@dataclass
class ProjectData:
    """Everything the sheets draw, read from a project directory; absent parts are None.

    F frames of W x H pixels. ``gt_frame[f]`` is the ground-truth frame of project frame f (-1: none).
    """

    root: Path
    F: int = 0
    W: int = 0
    H: int = 0
    frame_files: list[Path | None] = field(default_factory=list)
    frame_index: list[int] = field(default_factory=list)
    frame_time: list[float | None] = field(default_factory=list)
    shot_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    shot_source: str = "none"
    masks: np.ndarray | None = None
    people: Any = None                      # PeopleTracks
    Ks: np.ndarray | None = None            # [F, 3, 3]
    viewmats: np.ndarray | None = None      # [F, 4, 4] (cameras stage frame)
    registered: np.ndarray | None = None    # [F] bool
    points: np.ndarray | None = None        # cameras stage points
    colors: np.ndarray | None = None
    level: dict | None = None               # level/scene.npz arrays
    smpl: dict | None = None                # smpl_init.npz arrays
    gt: Any = None                          # SynthClip (or anything with its fields)
    gt_frame: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    status: list[StageStatus] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.root.name

    def gt_names(self) -> list[str]:
        if self.gt is None:
            return []
        try:
            return list(self.gt.actor_names)
        except Exception:  # noqa: BLE001 - any clip-like object without names
            return [f"actor {a}" for a in range(len(self.gt.joints2d))]

    def time_of(self, f: int) -> float | None:
        return self.frame_time[f] if f < len(self.frame_time) else None

    def K_of(self, f: int) -> np.ndarray | None:
        """The frame's K (cameras stage); if it has none, the focal guess ``smpl_init`` fitted with."""
        if self.Ks is not None and f < len(self.Ks) and np.isfinite(self.Ks[f]).all():
            return np.asarray(self.Ks[f], np.float64)
        if self.smpl is not None:
            g = 1.2 * max(self.W, self.H)
            return np.array([[g, 0, self.W / 2], [0, g, self.H / 2], [0, 0, 1.0]])
        return None

    def is_registered(self, f: int) -> bool | None:
        if self.registered is None or f >= len(self.registered):
            return None
        return bool(self.registered[f])

    def gt_shot(self, f: int) -> int | None:
        if self.gt is None or f >= len(self.gt_frame) or self.gt_frame[f] < 0:
            return None
        return int(np.asarray(self.gt.shot_ids)[self.gt_frame[f]])

    def is_gt_cut(self, f: int) -> bool:
        """Frame f starts a new ground-truth shot (compared with frame f - 1 of the project)."""
        if f == 0:
            return False
        a, b = self.gt_shot(f - 1), self.gt_shot(f)
        return a is not None and b is not None and a != b


def _load_ground_truth(project):
    """The project's ground-truth clip (input ``ground_truth``), through ``showmaker.synth.load_clip``."""
    from .synth import load_clip

    return load_clip(project.input_path("ground_truth"))


def _npz(path: Path, data: ProjectData, label: str, keys: Sequence[str] | None = None) -> dict | None:
    """The arrays of ``path`` (only ``keys`` when given), or None (absent, or unreadable: noted)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files if keys is None or k in keys}
    except Exception as exc:  # noqa: BLE001 - a broken file is reported, never fatal
        data.notes.append(f"{label}: unreadable ({type(exc).__name__}: {exc})")
        return None


def _stage_state(project, name: str) -> str:
    """' (manifest: failed ...)' when the manifest does not say ``done`` for a stage whose files exist."""
    if project is None or name not in project.stages:
        return ""
    rec = project.stages[name]
    if rec.status == "done":
        return ""
    if rec.status == "failed":
        return f" [manifest: FAILED ({rec.error}); these are the previous run's files]"
    return f" [manifest: {rec.status}]"


def _missing(project, name: str, data: "ProjectData", what: str = "") -> str:
    """'<name>: MISSING (...)' for a stage without files, saying what the manifest knows of it."""
    rec = project.stages.get(name) if project is not None else None
    why = []
    if rec is not None and rec.status == "failed":
        why.append("the stage FAILED, see below")
        err = str(rec.error or "")
        data.notes.append(f"{name} stage failed: {err[:400]}{'...' if len(err) > 400 else ''}")
    elif rec is not None and rec.status == "running":
        why.append("the stage is running or was interrupted")
    elif rec is None or rec.status == "pending":
        why.append("not run")
    if what:
        why.append(what)
    return f"{name}: MISSING ({'; '.join(why)})"


def _ranges(frames: Sequence[int]) -> str:
    """[3, 4, 5, 9] -> '3-5, 9'."""
    frames = sorted(int(f) for f in frames)
    out, i = [], 0
    while i < len(frames):
        j = i
        while j + 1 < len(frames) and frames[j + 1] == frames[j] + 1:
            j += 1
        out.append(str(frames[i]) if i == j else f"{frames[i]}-{frames[j]}")
        i = j + 1
    return ", ".join(out)


def load_project_data(project_dir: str | Path) -> ProjectData:
    """Read every stage output the sheets use; what is absent or unreadable becomes a status line or note."""
    root = Path(project_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such project directory")
    data = ProjectData(root=root)
    stages = root / "stages"
    st = data.status

    project = None
    try:
        from .project import Project

        project = Project.open(root)
    except Exception as exc:  # noqa: BLE001 - no manifest: still draw the files
        data.notes.append(f"manifest: {type(exc).__name__}: {exc}")

    # ---- ground truth (input "ground_truth")
    if project is not None and "ground_truth" in project.inputs:
        try:
            data.gt = _load_ground_truth(project)
            st.append(StageStatus("ground truth", True, f"ground truth: yes ({', '.join(data.gt_names())})"))
        except Exception as exc:  # noqa: BLE001
            st.append(StageStatus("ground truth", False, f"ground truth: unreadable ({type(exc).__name__}: {exc})"))
    else:
        st.append(StageStatus("ground truth", True, "ground truth: none (no 'ground_truth' input)"))

    # ---- ingest
    fdir = stages / "ingest" / "frames"
    meta = None
    if (fdir / "frames.json").is_file():
        try:
            meta = json.loads((fdir / "frames.json").read_text(encoding="utf-8"))
        except Exception as exc:  # noqa: BLE001
            data.notes.append(f"ingest/frames/frames.json: unreadable ({type(exc).__name__}: {exc})")
    shots_z = _npz(stages / "shots" / "shots.npz", data, "shots/shots.npz")
    masks_z = _npz(stages / "masks" / "masks.npz", data, "masks/masks.npz")
    people_z = _npz(stages / "masks" / "people.npz", data, "masks/people.npz")
    cams_z = _npz(stages / "cameras" / "cameras.npz", data, "cameras/cameras.npz")
    pts_z = _npz(stages / "cameras" / "points.npz", data, "cameras/points.npz", ("points", "colors"))
    level_z = _npz(stages / "level" / "scene.npz", data, "level/scene.npz")
    smpl_z = _npz(stages / "smpl_init" / "smpl_init.npz", data, "smpl_init/smpl_init.npz")

    if people_z is not None:
        try:
            from .estimate.people import PeopleTracks

            data.people = PeopleTracks.from_arrays(people_z)
        except Exception as exc:  # noqa: BLE001
            data.notes.append(f"masks/people.npz: not a PeopleTracks file ({type(exc).__name__}: {exc})")
    if masks_z is not None and "instances" in masks_z:
        data.masks = masks_z["instances"]
    elif data.people is not None:
        data.masks = data.people.masks

    # ---- frame count and size
    if meta is not None:
        try:
            frames = meta.get("frames", [])
            data.F = len(frames)
            data.W, data.H = int(meta.get("width", 0) or 0), int(meta.get("height", 0) or 0)
            data.frame_files = [fdir / fr["file"] for fr in frames]
            data.frame_index = [int(fr.get("index", i)) for i, fr in enumerate(frames)]
            data.frame_time = [None if fr.get("time") is None else float(fr["time"]) for fr in frames]
        except Exception as exc:  # noqa: BLE001
            data.notes.append(f"ingest/frames/frames.json: malformed ({type(exc).__name__}: {exc})")
            meta, data.F, data.W, data.H = None, 0, 0, 0
    if meta is None:
        for arr in (data.masks, None if cams_z is None else cams_z.get("viewmats"),
                    None if shots_z is None else shots_z.get("shot_ids")):
            if arr is not None:
                data.F = len(arr)
                break
        else:
            data.F = len(np.asarray(data.gt.shot_ids)) if data.gt is not None else 0
        data.frame_files = [None] * data.F
        data.frame_index = list(range(data.F))
        fps = getattr(data.gt, "fps", None) if data.gt is not None else None
        data.frame_time = [f / fps if fps else None for f in range(data.F)]
    if not (data.W and data.H):
        if data.masks is not None:
            data.H, data.W = data.masks.shape[1:3]
        elif data.gt is not None:
            data.H, data.W = np.asarray(data.gt.masks).shape[1:3]
        elif cams_z is not None and "Ks" in cams_z and np.isfinite(cams_z["Ks"]).any():
            K = np.nanmedian(np.asarray(cams_z["Ks"], np.float64), axis=0)  # principal point ~ image centre
            data.W, data.H = max(1, int(round(2 * K[0, 2]))), max(1, int(round(2 * K[1, 2])))
        else:
            data.W, data.H = 320, 240
    if meta is not None:
        missing = sum(1 for p in data.frame_files if not p.is_file())
        extra = f", {missing} PNG(s) missing" if missing else ""
        warn = "" if meta.get("complete", True) else f", INCOMPLETE: {meta.get('error')}"
        st.insert(0, StageStatus("ingest", not missing, f"ingest: {data.F} frames {data.W}x{data.H}{extra}{warn}"
                                 + _stage_state(project, "ingest")))
    else:
        st.insert(0, StageStatus("ingest", False, _missing(project, "ingest", data, "grey placeholders for frames")))
    F = data.F

    # ---- ground-truth frame of each project frame
    data.gt_frame = np.full(F, -1, np.int64)
    if data.gt is not None:
        n_gt = len(np.asarray(data.gt.shot_ids))
        for f in range(F):
            g = data.frame_index[f] if f < len(data.frame_index) else f
            if 0 <= g < n_gt:
                data.gt_frame[f] = g

    # ---- shots
    shot_ids = None
    if shots_z is not None and "shot_ids" in shots_z:
        shot_ids = np.asarray(shots_z["shot_ids"]).astype(np.int64)
        if len(shot_ids) != F:
            data.notes.append(f"shots/shots.npz has {len(shot_ids)} frames, the project {F}")
            shot_ids = (np.concatenate([shot_ids[:F], np.full(max(0, F - len(shot_ids)), shot_ids[-1])])
                        if len(shot_ids) else None)
    if shot_ids is not None:
        data.shot_source = "shots stage"
        st.append(StageStatus("shots", True, f"shots: {len(np.unique(shot_ids))} shot(s)"
                              + _stage_state(project, "shots")))
    elif data.gt is not None and (data.gt_frame >= 0).any():
        gs = np.asarray(data.gt.shot_ids)
        shot_ids = np.zeros(F, np.int64)
        last = 0
        for f in range(F):
            last = int(gs[data.gt_frame[f]]) if data.gt_frame[f] >= 0 else last
            shot_ids[f] = last
        data.shot_source = "ground truth (no shots stage)"
        st.append(StageStatus("shots", False, _missing(project, "shots", data, "using the ground truth's shots")))
    else:
        shot_ids = np.zeros(F, np.int64)
        data.shot_source = "one shot assumed (no shots stage)"
        st.append(StageStatus("shots", False, _missing(project, "shots", data, "one shot assumed")))
    data.shot_ids = shot_ids

    # ---- masks / people
    if data.masks is not None:
        ids = np.unique(data.masks[: min(len(data.masks), 512)])
        src = "masks.npz" if masks_z is not None and "instances" in masks_z else "people.npz"
        st.append(StageStatus("masks", True, f"masks: {int((ids > 0).sum())} id(s) ({src})"
                              + _stage_state(project, "masks")))
        if data.masks.shape[0] != F:
            data.notes.append(f"masks have {data.masks.shape[0]} frames, the project {F}")
    else:
        st.append(StageStatus("masks", False, _missing(project, "masks", data)))
    if data.people is not None:
        st.append(StageStatus("people", True, f"keypoints: {data.people.n_tracks} track(s) (people.npz)"))
    else:
        st.append(StageStatus("people", True, "keypoints: none (no masks/people.npz)"))

    # ---- cameras
    if cams_z is not None and "viewmats" in cams_z:
        data.viewmats = np.asarray(cams_z["viewmats"], np.float64)
        data.Ks = np.asarray(cams_z["Ks"], np.float64) if "Ks" in cams_z else None
        reg = np.isfinite(data.viewmats).all(axis=(1, 2))
        if "registered" in cams_z:
            reg &= np.asarray(cams_z["registered"], bool)
        data.registered = reg
        st.append(StageStatus("cameras", bool(reg.all()), f"cameras: {int(reg.sum())}/{len(reg)} registered"
                              + _stage_state(project, "cameras")))
        if len(reg) != F:
            data.notes.append(f"cameras have {len(reg)} frames, the project {F}")
    else:
        st.append(StageStatus("cameras", False, _missing(project, "cameras", data)))
    if pts_z is not None and "points" in pts_z:
        data.points = np.asarray(pts_z["points"], np.float64)
        data.colors = np.asarray(pts_z.get("colors", np.full_like(data.points, 0.8)), np.float64)
    if level_z is not None and "viewmats" in level_z and "points" in level_z:
        data.level = level_z
        st.append(StageStatus("level", True, "level: yes (Z up)" + _stage_state(project, "level")))
        if data.Ks is None and "Ks" in level_z:
            data.Ks = np.asarray(level_z["Ks"], np.float64)
    else:
        st.append(StageStatus("level", False, _missing(project, "level", data)))

    # ---- SMPL init
    if smpl_z is not None and "joints_cam" in smpl_z:
        data.smpl = smpl_z
        n = smpl_z["joints_cam"].shape[0]
        st.append(StageStatus("smpl_init", True, f"smpl_init: {n} person(s)" + _stage_state(project, "smpl_init")))
    else:
        text = None
        rep = stages / "smpl_init" / "report.json"
        if rep.is_file():
            try:
                note = json.loads(rep.read_text(encoding="utf-8")).get("note", "see its report.json")
                text = f"smpl_init: no fit ({note})"
            except Exception:  # noqa: BLE001
                pass
        st.append(StageStatus("smpl_init", False, text or _missing(project, "smpl_init", data)))
    return data


# ================================================================================================ frames
def select_frames(data: ProjectData, shot: int, frames_per_shot: int) -> list[tuple[int, list[str]]]:
    """The frames of ``shot``'s sheet, in order, with their roles.

    The previous shot's last frame, the shot's first frame, ``frames_per_shot`` frames evenly through the
    shot (first and last included), and both frames around a ground-truth cut inside the shot.
    """
    members = np.flatnonzero(data.shot_ids == shot)
    if len(members) == 0:
        return []
    first = int(members[0])
    picks: dict[int, list[str]] = {}

    def add(f: int, role: str | None = None):
        roles = picks.setdefault(int(f), [])
        if role and role not in roles:
            roles.append(role)

    before = np.flatnonzero(np.arange(len(data.shot_ids)) < first)
    if len(before):
        prev = int(before[-1])
        add(prev, f"last of shot {int(data.shot_ids[prev])}")
        add(first, "CUT: first of shot")
    n = max(1, min(int(frames_per_shot), len(members)))
    for pos in np.unique(np.round(np.linspace(0, len(members) - 1, n)).astype(int)):
        add(members[pos])
    for f in members[1:]:
        if data.is_gt_cut(int(f)):
            add(f - 1, "before GT cut")
            add(f, "GT cut")
    return sorted(picks.items())


def _frame_image(data: ProjectData, f: int) -> tuple[np.ndarray, bool]:
    """(frame [H, W, 3] uint8, found)."""
    p = data.frame_files[f] if f < len(data.frame_files) else None
    if p is not None and p.is_file():
        try:
            with Image.open(p) as im:
                return np.asarray(im.convert("RGB")), True
        except Exception:  # noqa: BLE001 - drawn as a placeholder
            pass
    return np.full((data.H, data.W, 3), 70, np.uint8), False


def _resize(img: np.ndarray, tw: int, th: int) -> np.ndarray:
    h, w = img.shape[:2]
    if (w, h) == (tw, th):
        return img
    s = tw / w
    resample = Image.NEAREST if s >= 2 else (Image.LANCZOS if s < 1 else Image.BILINEAR)
    return np.asarray(Image.fromarray(img).resize((tw, th), resample))


def _resize_ids(ids: np.ndarray, tw: int, th: int) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.shape == (th, tw):
        return ids
    ys = np.minimum(((np.arange(th) + 0.5) * ids.shape[0] / th).astype(int), ids.shape[0] - 1)
    xs = np.minimum(((np.arange(tw) + 0.5) * ids.shape[1] / tw).astype(int), ids.shape[1] - 1)
    return ids[ys[:, None], xs[None, :]]


def _project_cam(joints_cam: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame points [J, 3] -> (pixels [J, 2], in front [J])."""
    z = joints_cam[:, 2]
    front = np.isfinite(joints_cam).all(1) & (z > 1e-6)
    uvw = joints_cam @ K.T
    uv = np.where(front[:, None], uvw[:, :2] / np.where(front, z, 1.0)[:, None], np.nan)
    return uv, front


@dataclass
class _Tile:
    """One panel (estimate or ground truth) of a sampled frame."""

    frame: int
    panel: str
    image: np.ndarray
    caption: list[str]
    warn: list[bool]
    border: tuple[int, int, int] | None
    overlays: list  # callables draw(draw, x0, y0, scale)
    gt_frame: int = -1
    roles: list[str] = field(default_factory=list)
    scale: float = 1.0  # tile pixels per image pixel


def _estimate_tile(data: ProjectData, f: int, roles: list[str], tw: int, th: int) -> _Tile:
    img, found = _frame_image(data, f)
    W = img.shape[1]
    scale = tw / W
    img = _resize(img, tw, th)
    ids_here: list[int] = []
    if data.masks is not None and f < len(data.masks):
        ids_small = _resize_ids(data.masks[f], tw, th)
        img = qd.tint_instances(img, ids_small)
        ids_here = [int(k) for k in np.unique(data.masks[f]) if k > 0]
    overlays = []
    kp_tracks, smpl_tracks, residuals = [], [], []
    people = data.people
    if people is not None and f < people.keypoints2d.shape[1]:
        for n in range(people.n_tracks):
            if not bool(people.present[n, f]):
                continue
            kp_tracks.append(n)
            kp, box = people.keypoints2d[n, f], people.boxes[n, f]
            face = people.face_boxes[n, f] if bool(people.face_found[n, f]) else None
            overlays.append(_people_overlay(kp, box, face, n))
    if data.smpl is not None:
        K = data.K_of(f)
        jc, valid = data.smpl["joints_cam"], data.smpl.get("valid")
        if K is not None and f < jc.shape[1]:
            for n in range(jc.shape[0]):
                if valid is not None and not bool(valid[n, f]):
                    continue
                uv, front = _project_cam(np.asarray(jc[n, f], np.float64), K)
                if not front.any():
                    continue
                smpl_tracks.append(n)
                if "residual" in data.smpl and np.isfinite(data.smpl["residual"][n, f]):
                    residuals.append(float(data.smpl["residual"][n, f]))
                overlays.append(_smpl_overlay(uv, front, qd.instance_color(n + 1)))
    t = data.time_of(f)
    src = data.frame_index[f] if f < len(data.frame_index) else f
    line1 = f"frame {f}" + (f" (src {src})" if src != f else "") + (f"  t={t:.3f}s" if t is not None else "  t=?")
    line1 += f"  shot {int(data.shot_ids[f])}"
    caption, warn = [line1], [False]
    flags = list(roles)
    reg = data.is_registered(f)
    if reg is False:
        flags.append("NO CAMERA")
    if not found:
        flags.append("no frame image")
    if flags:
        caption.append(" | ".join(flags))
        warn.append(reg is False or not found)
    what = []
    what.append("ids " + (" ".join(str(k) for k in ids_here) if ids_here else "-") if data.masks is not None
                else "no masks")
    if people is not None:
        what.append("kp " + (" ".join(f"#{n}" for n in kp_tracks) if kp_tracks else "-"))
    if data.smpl is not None:
        s = "smpl " + (" ".join(f"#{n}" for n in smpl_tracks) if smpl_tracks else "-")
        if residuals:
            s += f" ({np.mean(residuals):.1f}px)"
        what.append(s)
    caption.append("  ".join(what))
    warn.append(False)
    border = qd.CUT_COLOR if any(r.startswith(("CUT", "last of shot")) for r in roles) else None
    g = int(data.gt_frame[f]) if f < len(data.gt_frame) else -1
    return _Tile(f, "estimate", img, caption, warn, border, overlays, g, list(roles), scale)


def _people_overlay(kp, box, face, n):
    color = qd.instance_color(n + 1)

    def draw_it(draw: ImageDraw.ImageDraw, x0, y0, scale):
        b = qd.to_draw_xy(np.asarray(box, np.float64).reshape(2, 2), scale, (x0, y0))
        if np.isfinite(b).all() and (b[1] > b[0]).all():
            draw.rectangle([b[0, 0], b[0, 1], b[1, 0], b[1, 1]], outline=color)
            tf = qd.font(11)
            draw.text((b[0, 0] + 2, b[0, 1] + 1), f"#{n}", fill=color, font=tf, stroke_width=1,
                      stroke_fill=(0, 0, 0))
        if face is not None:
            fb = qd.to_draw_xy(np.asarray(face, np.float64).reshape(2, 2), scale, (x0, y0))
            if np.isfinite(fb).all() and (fb[1] > fb[0]).all():
                draw.rectangle([fb[0, 0], fb[0, 1], fb[1, 0], fb[1, 1]], outline=qd.lighten(color, 0.6))
        qd.draw_keypoints(draw, kp, qd.MP_POSE_EDGES, color, scale, (x0, y0))

    return draw_it


def _smpl_overlay(uv, ok, color):
    def draw_it(draw, x0, y0, scale):
        qd.draw_skeleton(draw, uv, SMPL_PARENTS, color, scale, (x0, y0), ok=ok)

    return draw_it


def _gt_tile(data: ProjectData, f: int, tw: int, th: int) -> _Tile:
    g = int(data.gt_frame[f]) if f < len(data.gt_frame) else -1
    gt = data.gt
    if g < 0:
        img = np.full((th, tw, 3), 50, np.uint8)
        return _Tile(f, "ground_truth", img, ["ground truth: no frame", "(frame index beyond the clip)"],
                     [True, False], None, [], g)
    try:
        img = np.asarray(gt.frames[g])
    except Exception:  # noqa: BLE001
        img = np.full((data.H, data.W, 3), 70, np.uint8)
    W = img.shape[1]
    scale = tw / W
    img = _resize(img, tw, th)
    gm = np.asarray(gt.masks[g])
    img = qd.tint_instances(img, _resize_ids(gm, tw, th))
    names = data.gt_names()
    overlays = []
    j2d = np.asarray(gt.joints2d)
    inf = getattr(gt, "joint_in_frame", None)
    vis = getattr(gt, "joint_visible", None)
    shown = []
    for a in range(j2d.shape[0]):
        ok = np.asarray(inf[a, g], bool) if inf is not None else np.isfinite(j2d[a, g]).all(1)
        if not ok.any():
            continue
        hidden = ok & ~np.asarray(vis[a, g], bool) if vis is not None else None
        shown.append(a)
        overlays.append(_gt_overlay(j2d[a, g], ok, hidden, qd.instance_color(a + 1)))
    gs = int(np.asarray(gt.shot_ids)[g])
    cap = [f"GT frame {g}  shot {gs}"]
    warn = [False]
    flags = []
    is_cut = data.is_gt_cut(f) or (g > 0 and g in set(int(c) for c in gt.cuts))
    if is_cut:
        flags.append("GT CUT")
    if f + 1 < len(data.gt_frame) and data.is_gt_cut(f + 1):
        flags.append("last before GT cut")
    if flags:
        cap.append(" | ".join(flags))
        warn.append(False)
    ids = [int(k) for k in np.unique(gm) if k > 0]
    cap.append("masks " + (" ".join(names[k - 1] if k - 1 < len(names) else str(k) for k in ids) or "-")
               + "  joints " + (" ".join(names[a] if a < len(names) else str(a) for a in shown) or "-"))
    warn.append(False)
    return _Tile(f, "ground_truth", img, cap, warn, qd.GT_CUT_COLOR if is_cut else None, overlays, g, [], scale)


def _gt_overlay(j, ok, hidden, color):
    def draw_it(draw, x0, y0, scale):
        qd.draw_skeleton(draw, j, SMPL_PARENTS, color, scale, (x0, y0), ok=ok, hidden=hidden, width=2, square=2.0)

    return draw_it


# ================================================================================================ layout
def _tile_size(W: int, H: int, panels: int, max_width: int) -> tuple[int, int]:
    tw = min(max(W, _MIN_TILE_W), _MAX_TILE_W)
    if tw * H / W > _MAX_TILE_H:
        tw = max(64, int(_MAX_TILE_H * W / H))
    limit = (max_width - 2 * _PAD - (panels - 1) * _PANEL_GAP) // panels
    tw = max(32, min(tw, limit))
    th = max(1, int(round(tw * H / W)))
    return tw, th


def _draw_runs(draw: ImageDraw.ImageDraw, x: int, y: int, width: int, runs, f) -> int:
    """Draw (text, colour) runs left to right, wrapping between runs; returns the y below the last line."""
    lh = qd.line_height(f)
    cx = x
    sep = "   "
    for text, color in runs:
        w = qd.text_width(f, text)
        if cx > x and cx + w > x + width:
            cx, y = x, y + lh
        draw.text((cx, y), text, fill=color, font=f)
        cx += w + qd.text_width(f, sep)
    return y + lh


def match_ids_to_ground_truth(data: ProjectData, frames: Sequence[int]) -> dict[int, tuple[int, float]]:
    """For each estimated mask id over ``frames``: (best ground-truth mask id, IoU), the IoU of the masks
    pooled over those frames (sum of intersections / sum of unions). Empty without masks or ground truth."""
    if data.gt is None or data.masks is None:
        return {}
    inter: dict[tuple[int, int], int] = {}
    area_e: dict[int, int] = {}
    area_g: dict[int, int] = {}
    for f in frames:
        g = int(data.gt_frame[f]) if f < len(data.gt_frame) else -1
        if g < 0 or f >= len(data.masks):
            continue
        gm = np.asarray(data.gt.masks[g]).astype(np.int64)
        em = _resize_ids(data.masks[f], gm.shape[1], gm.shape[0]).astype(np.int64)
        for k, c in zip(*np.unique(em, return_counts=True)):
            area_e[int(k)] = area_e.get(int(k), 0) + int(c)
        for j, c in zip(*np.unique(gm, return_counts=True)):
            area_g[int(j)] = area_g.get(int(j), 0) + int(c)
        both = (em > 0) & (gm > 0)
        codes, counts = np.unique(em[both] * 65536 + gm[both], return_counts=True)
        for code, c in zip(codes, counts):
            key = (int(code) // 65536, int(code) % 65536)
            inter[key] = inter.get(key, 0) + int(c)
    out = {}
    for k in (k for k in area_e if k > 0):
        best = max(((inter.get((k, j), 0) / (area_e[k] + area_g[j] - inter.get((k, j), 0)), j)
                    for j in area_g if j > 0), default=(0.0, 0))
        out[k] = (best[1], float(best[0]))
    return out


def _legend_items(data: ProjectData, tiles: list[_Tile], matches: dict | None = None) -> list:
    """Legend entries as (kind, colour, text)."""
    items = []
    ids = set()
    for t in tiles:
        if t.panel == "estimate" and data.masks is not None and t.frame < len(data.masks):
            ids.update(int(k) for k in np.unique(data.masks[t.frame]) if k > 0)
    if data.people is not None:
        ids.update(n + 1 for t in tiles if t.panel == "estimate" for n in range(data.people.n_tracks)
                   if t.frame < data.people.present.shape[1] and data.people.present[n, t.frame])
    names = data.gt_names()
    for k in sorted(ids):
        text = f"id {k}"
        if data.people is not None:
            text += f" = track #{k - 1}"
        if matches and k in matches:
            j, iou = matches[k]
            text += (f" ~ GT {names[j - 1] if 0 < j <= len(names) else j} (IoU {iou:.2f})" if iou >= 0.1
                     else " ~ no GT actor (IoU < 0.1)")
        items.append(("swatch", qd.instance_color(k), text))
    if data.gt is not None:
        for a, nm in enumerate(names):
            items.append(("swatch", qd.instance_color(a + 1), f"GT {a + 1} = {nm}"))
    if data.people is not None:
        items.append(("kp", (230, 230, 230), "2D keypoints (people.npz; hollow = low visibility) + box"))
    if data.smpl is not None:
        items.append(("smpl", (230, 230, 230), "SMPL joints (smpl_init, projected with the frame's K)"))
    if data.gt is not None:
        items.append(("smpl", (230, 230, 230), "GT: true SMPL joints (hollow = occluded)"))
    items.append(("border", qd.CUT_COLOR, "estimated cut (first of shot / last of previous)"))
    if data.gt is not None:
        items.append(("border", qd.GT_CUT_COLOR, "ground-truth cut"))
    return items


def _draw_legend(draw: ImageDraw.ImageDraw, x: int, y: int, width: int, items, f) -> int:
    lh = qd.line_height(f)
    cx = x
    for kind, color, text in items:
        w = 26 + qd.text_width(f, text) + 18
        if cx > x and cx + w > x + width:
            cx, y = x, y + lh + 2
        yc = y + lh / 2 - 1
        if kind == "swatch":
            draw.rectangle([cx, yc - 6, cx + 18, yc + 6], fill=color, outline=(0, 0, 0))
        elif kind == "border":
            draw.rectangle([cx, yc - 6, cx + 18, yc + 6], outline=color, width=3)
        elif kind == "kp":
            qd.draw_keypoints(draw, np.array([[cx + 2.5, yc + 0.5, 1], [cx + 17.5, yc + 0.5, 1]]), [(0, 1)],
                              color, 1.0)
        elif kind == "smpl":
            qd.draw_skeleton(draw, np.array([[cx + 3.5, yc + 0.5], [cx + 16.5, yc + 0.5]]), [-1, 0], color, 1.0)
        draw.text((cx + 26, y), text, fill=qd.TEXT, font=f)
        cx += w
    return y + lh + 2


def _header_runs(data: ProjectData) -> list:
    return [(s.text, qd.TEXT_DIM if s.ok else qd.WARN) for s in data.status]


def render_shot_sheet(data: ProjectData, shot: int, n_shots: int, frames_per_shot: int = 6,
                      max_width: int = 1600) -> tuple[Image.Image, dict]:
    """One shot's contact sheet: (image, layout metadata)."""
    picks = select_frames(data, shot, frames_per_shot)
    with_gt = data.gt is not None
    panels = 2 if with_gt else 1
    tw, th = _tile_size(data.W, data.H, panels, max_width)
    groups = []
    for f, roles in picks:
        g = [_estimate_tile(data, f, roles, tw, th)]
        if with_gt:
            g.append(_gt_tile(data, f, tw, th))
        groups.append(g)
    group_w = panels * tw + (panels - 1) * _PANEL_GAP
    cols = max(1, min(len(groups) or 1, (max_width - 2 * _PAD + _GAP) // (group_w + _GAP)))
    rows = max(1, math.ceil(len(groups) / cols))
    sheet_w = 2 * _PAD + cols * group_w + (cols - 1) * _GAP
    sheet_w = min(max_width, max(sheet_w, 720))
    text_w = sheet_w - 2 * _PAD

    fcap, fhead, ftitle = qd.font(13), qd.font(13), qd.font(18)
    lh = qd.line_height(fcap)
    for grp in groups:
        for t in grp:
            wrapped, wflags = [], []
            for line, w in zip(t.caption, t.warn):
                for part in qd.wrap(fcap, line, tw - 4):
                    wrapped.append(part)
                    wflags.append(w)
            t.caption, t.warn = wrapped, wflags
    cap_h = max((len(t.caption) for grp in groups for t in grp), default=1) * lh + 6

    members = np.flatnonzero(data.shot_ids == shot)
    a, b = (int(members[0]), int(members[-1])) if len(members) else (0, -1)
    ta, tb = data.time_of(a), data.time_of(b)
    rank = list(np.unique(data.shot_ids)).index(shot) + 1
    title = f"ShowMaker QC   {data.name}   shot {shot}   ({rank} of {n_shots})"
    info = (f"frames {a}-{b} ({len(members)} frames" if b > a else f"frame {a} (1 frame")
    if ta is not None and tb is not None:
        info += f", t {ta:.3f}-{tb:.3f} s"
    info += f"); shots from: {data.shot_source}"
    if data.registered is not None and len(members):
        r = data.registered[members[members < len(data.registered)]]
        info += f"; cameras registered {int(r.sum())}/{len(members)}"
        if (~r).any():
            info += f" (unregistered: {_ranges(members[members < len(data.registered)][~r])})"
    if with_gt:
        gsh = sorted({data.gt_shot(int(f)) for f in members} - {None})
        info += f"; GT shot(s) here: {', '.join(map(str, gsh)) or '-'}"
        gt_cuts_in = [int(f) for f in members[1:] if data.is_gt_cut(int(f))]
        if gt_cuts_in:
            info += f"; GT CUT INSIDE THIS SHOT at frame(s) {', '.join(map(str, gt_cuts_in))} (missed cut?)"
        if len(members) and data.shot_ids[a] != 0 and not data.is_gt_cut(a):
            info += f"; no GT cut at frame {a} (false cut?)"
    matches = match_ids_to_ground_truth(data, [f for f, _ in picks])
    legend = _legend_items(data, [t for grp in groups for t in grp], matches)

    # Measure the header on a scratch canvas, then draw for real.
    def header(draw: ImageDraw.ImageDraw) -> int:
        y = _PAD
        for line in qd.wrap(ftitle, title, text_w):
            draw.text((_PAD, y), line, fill=qd.TEXT, font=ftitle)
            y += qd.line_height(ftitle)
        y += 2
        for line in qd.wrap(fhead, info, text_w):
            draw.text((_PAD, y), line, fill=qd.TEXT, font=fhead)
            y += qd.line_height(fhead)
        y = _draw_runs(draw, _PAD, y, text_w, _header_runs(data), fhead)
        for note in data.notes:
            for line in qd.wrap(fhead, note, text_w):
                draw.text((_PAD, y), line, fill=qd.WARN, font=fhead)
                y += qd.line_height(fhead)
        y = _draw_legend(draw, _PAD, y + 2, text_w, legend, fhead)
        return y + 6

    header_h = header(ImageDraw.Draw(Image.new("RGB", (sheet_w, 10))))
    row_h = th + cap_h + _GAP
    sheet_h = header_h + rows * row_h + _PAD
    sheet = Image.new("RGB", (sheet_w, sheet_h), qd.BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    header(draw)
    meta_tiles = []
    if not groups:
        draw.text((_PAD, header_h), "no frames in this shot", fill=qd.WARN, font=fhead)
    for i, grp in enumerate(groups):
        r, c = divmod(i, cols)
        gx = _PAD + c * (group_w + _GAP)
        gy = header_h + r * row_h
        for j, t in enumerate(grp):
            x0 = gx + j * (tw + _PANEL_GAP)
            # overlays are drawn on the tile alone, so whatever falls outside the frame is clipped
            timg = Image.fromarray(t.image)
            tdraw = ImageDraw.Draw(timg)
            for ov in t.overlays:
                ov(tdraw, 0, 0, t.scale)
            if t.panel == "ground_truth":
                tdraw.text((3, 2), "GT", fill=(255, 255, 255), font=qd.font(12), stroke_width=2,
                           stroke_fill=(0, 0, 0))
            sheet.paste(timg, (x0, gy))
            if t.border is not None:
                draw.rectangle([x0 - 1, gy - 1, x0 + tw, gy + th], outline=t.border, width=_BORDER)
            yy = gy + th + 3
            for line, w in zip(t.caption, t.warn):
                draw.text((x0 + 2, yy), line, fill=qd.WARN if w else (qd.TEXT if t.panel == "estimate"
                                                                        else qd.TEXT_DIM), font=fcap)
                yy += lh
            meta_tiles.append({"frame": t.frame, "panel": t.panel, "gt_frame": t.gt_frame, "roles": t.roles,
                               "box": [x0, gy, x0 + tw, gy + th], "caption": " ".join(t.caption)})
    meta = {"kind": "shot", "shot": int(shot), "frames": [f for f, _ in picks], "tile_size": [tw, th],
            "tiles": meta_tiles, "shot_source": data.shot_source,
            "missing": [s.name for s in data.status if "MISSING" in s.text],
            "warnings": [s.name for s in data.status if not s.ok], "status": [s.text for s in data.status],
            "info": info, "notes": data.notes,
            "id_matches": {str(k): {"gt_id": j, "iou": iou} for k, (j, iou) in matches.items()}}
    return sheet, meta


# ================================================================================================ top view
def _nice_step(span: float, target: int = 8) -> float:
    raw = max(span, 1e-12) / target
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _fmt(v: float, step: float) -> str:
    decimals = max(0, -int(math.floor(math.log10(step))) + (1 if step / 10 ** math.floor(math.log10(step)) == 2.5
                                                           else 0))
    return f"{v:.{decimals}f}"


def _similarity_inverse(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S^-1 [4, 4], the rotation R [3, 3] of S)."""
    A = S[:3, :3]
    s = float(np.cbrt(np.linalg.det(A)))
    R = A / s
    inv = np.eye(4)
    inv[:3, :3] = R.T / s
    inv[:3, 3] = -(R.T @ S[:3, 3]) / s
    return inv, R


def render_top_view(data: ProjectData, max_width: int = 1600) -> tuple[Image.Image, dict]:
    """The stage points and cameras seen from above: (image, metadata)."""
    ftitle, f, fsmall = qd.font(18), qd.font(13), qd.font(11)
    notes, meta = list(data.notes), {"kind": "cameras_top"}
    if data.level is not None:
        vm = np.asarray(data.level["viewmats"], np.float64)
        pts = np.asarray(data.level["points"], np.float64)
        cols = np.asarray(data.level.get("colors", np.full_like(pts, 0.8)), np.float64)
        reg = np.isfinite(vm).all(axis=(1, 2))
        if "registered" in data.level:
            reg &= np.asarray(data.level["registered"], bool)
        if data.registered is not None and len(data.registered) == len(reg):
            reg &= data.registered
        source = "level/scene.npz: levelled, Z up, seen from above (looking down -Z)"
        axes = ("X", "Y")
        B = np.eye(3)
    elif data.viewmats is not None:
        vm, reg = data.viewmats, data.registered
        pts = data.points if data.points is not None else np.zeros((0, 3))
        cols = data.colors if data.colors is not None else np.zeros((0, 3))
        source = ("cameras/cameras.npz (NOT levelled: SfM frame, seen along the cameras' mean up direction; "
                  "the level stage is missing)")
        axes = ("u", "v")
        R = vm[reg, :3, :3]
        if len(R):
            up = -R[:, 1, :].mean(0)
            right = R[:, 0, :].mean(0)
        else:
            up, right = np.array([0, 0, 1.0]), np.array([1.0, 0, 0])
        up /= max(np.linalg.norm(up), 1e-12)
        e1 = right - up * (right @ up)
        if np.linalg.norm(e1) < 1e-9:
            e1 = np.cross(up, [0, 0, 1.0]) if abs(up[2]) < 0.9 else np.cross(up, [1.0, 0, 0])
        e1 /= np.linalg.norm(e1)
        B = np.stack([e1, np.cross(up, e1), up])
    else:
        vm, reg = np.zeros((0, 4, 4)), np.zeros(0, bool)
        pts = data.points if data.points is not None else np.zeros((0, 3))
        cols = data.colors if data.colors is not None else np.zeros((0, 3))
        source = "no cameras: the cameras and level stages are MISSING"
        axes = ("x", "y")
        B = np.eye(3)
    F = len(vm)
    idx = np.flatnonzero(reg)
    Rw = vm[:, :3, :3]
    centers = -np.einsum("fji,fj->fi", Rw, vm[:, :3, 3]) if F else np.zeros((0, 3))

    # ---- ground truth, aligned into the drawn frame
    gt_c = gt_fwd = gt_right = None
    gt_text = None
    gt_idx = np.zeros(0, np.int64)
    if data.gt is not None and F:
        mapped = np.flatnonzero(data.gt_frame[:F] >= 0) if len(data.gt_frame) else np.zeros(0, np.int64)
        both = np.intersect1d(mapped, idx)
        if len(both) >= 2:
            try:
                from .estimate.cameras import align_similarity

                gvm = np.asarray(data.gt.viewmats, np.float64)[data.gt_frame[mapped]]
                S = align_similarity(vm[both], np.asarray(data.gt.viewmats, np.float64)[data.gt_frame[both]])
                Sinv, RS = _similarity_inverse(S)
                c_gt = -np.einsum("fji,fj->fi", gvm[:, :3, :3], gvm[:, :3, 3])
                gt_c = c_gt @ Sinv[:3, :3].T + Sinv[:3, 3]
                gt_fwd = gvm[:, 2, :3] @ RS  # directions map by R_S^T: row vector @ R_S
                gt_right = gvm[:, 0, :3] @ RS
                gt_idx = mapped
                pos = {int(m): i for i, m in enumerate(mapped)}
                err = np.linalg.norm(centers[both] - gt_c[[pos[int(b)] for b in both]], axis=1)
                if len(pts):
                    size = float(np.linalg.norm(np.subtract(*np.nanpercentile(pts, [99, 1], axis=0))))
                else:
                    size = float(np.linalg.norm(np.ptp(centers[idx], axis=0)))
                rel = f" ({100 * err.mean() / size:.2g}% of the scene's size)" if size > 0 else ""
                gt_text = (f"ground truth (magenta circles/triangles): true camera centres mapped into this frame "
                           f"by the similarity fitted on {len(both)} registered frames (estimate-to-truth scale "
                           f"{float(np.cbrt(np.linalg.det(S[:3, :3]))):.4g}); centre error mean "
                           f"{err.mean():.3g}, max {err.max():.3g} stage units{rel}")
                meta["gt_center_error_mean"] = float(err.mean())
            except Exception as exc:  # noqa: BLE001 - the alignment is a check, never fatal
                gt_text = f"ground truth: could not align ({type(exc).__name__}: {exc})"
        else:
            gt_text = "ground truth: fewer than 2 registered frames to align with"

    P2 = pts @ B.T if len(pts) else np.zeros((0, 3))
    C2 = centers @ B.T if F else np.zeros((0, 3))
    fwd2 = Rw[:, 2, :] @ B.T if F else np.zeros((0, 3))
    right2 = Rw[:, 0, :] @ B.T if F else np.zeros((0, 3))
    G2 = gt_c @ B.T if gt_c is not None else None
    Gf2 = gt_fwd @ B.T if gt_fwd is not None else None
    Gr2 = gt_right @ B.T if gt_right is not None else None

    # ---- extent (robust to stray points), equal aspect
    xy = [C2[idx, :2]]
    if len(P2):
        lo, hi = np.nanpercentile(P2[:, :2], [1, 99], axis=0)
        xy.append(np.stack([lo, hi]))
    if G2 is not None:
        xy.append(G2[:, :2])
    xy = np.concatenate([a for a in xy if len(a)]) if any(len(a) for a in xy) else np.array([[-1.0, -1], [1, 1]])
    xy = xy[np.isfinite(xy).all(1)]
    if not len(xy):
        xy = np.array([[-1.0, -1], [1, 1]])
    lo, hi = xy.min(0), xy.max(0)
    span = max(float((hi - lo).max()), 1e-6)
    mid = (lo + hi) / 2
    half = np.maximum((hi - lo) / 2, 0.3 * span / 2) * 1.08 + 0.02 * span
    lo, hi = mid - half, mid + half
    axis_w, axis_h = 58, 26
    L = max(100, min(1000 if (F or len(pts)) else 360, max_width - 2 * _PAD - axis_w))
    sc = L / float((hi - lo).max())
    map_w, map_h = int(round((hi[0] - lo[0]) * sc)), int(round((hi[1] - lo[1]) * sc))
    sheet_w = min(max_width, max(2 * _PAD + axis_w + map_w, 720))
    text_w = sheet_w - 2 * _PAD

    def to_px(p):
        p = np.asarray(p, np.float64)
        return np.stack([(p[..., 0] - lo[0]) * sc, (hi[1] - p[..., 1]) * sc], -1)

    # ---- text blocks
    title = f"ShowMaker QC   {data.name}   cameras from above"
    shots_here = data.shot_ids[:F] if len(data.shot_ids) >= F else np.resize(data.shot_ids, F)
    unreg = np.flatnonzero(~reg) if F else np.zeros(0, np.int64)
    step = _nice_step(float((hi - lo).max()))
    lines_top = [(source, qd.TEXT)]
    lines_top += [(n, qd.WARN) for n in notes]
    bottom = []
    if F:
        for s in np.unique(shots_here):
            m = np.flatnonzero(shots_here == s)
            bottom.append(("swatch", qd.shot_color(s),
                           f"shot {int(s)}: frames {_ranges(m)}, {int(reg[m].sum())}/{len(m)} registered"))
        if len(unreg):
            bottom.append(("text", qd.WARN, f"UNREGISTERED frames ({len(unreg)}): {_ranges(unreg)}"))
        else:
            bottom.append(("text", qd.TEXT, f"all {F} frames registered"))
    if gt_text:
        bottom.append(("text", qd.GT_COLOR, gt_text))
    if not F and not len(pts):
        bottom = [("text", qd.WARN, "nothing to draw: no cameras and no stage points")]
    else:
        bottom.append(("text", qd.TEXT_DIM,
                       f"{len(pts)} stage points coloured by their colour (the highest point per pixel); grid "
                       f"step {_fmt(step, step)} stage units; 1 px = {1 / sc:.3g} units; triangles: camera frusta "
                       f"(apex = camera centre), dots: every registered camera centre"))

    def text_block(draw, y):
        for line in qd.wrap(ftitle, title, text_w):
            draw.text((_PAD, y), line, fill=qd.TEXT, font=ftitle)
            y += qd.line_height(ftitle)
        y += 2
        for text, color in lines_top:
            for line in qd.wrap(f, text, text_w):
                draw.text((_PAD, y), line, fill=color, font=f)
                y += qd.line_height(f)
        return y + 4

    def bottom_block(draw, y):
        lh = qd.line_height(f)
        for kind, color, text in bottom:
            x = _PAD
            if kind == "swatch":
                draw.rectangle([x, y + 3, x + 16, y + lh - 5], fill=color, outline=(0, 0, 0))
                x += 24
                color = qd.TEXT
            for line in qd.wrap(f, text, text_w - (x - _PAD)):
                draw.text((x, y), line, fill=color, font=f)
                y += lh
        return y

    scratch = ImageDraw.Draw(Image.new("RGB", (sheet_w, 10)))
    top_h = text_block(scratch, _PAD)
    bottom_h = bottom_block(scratch, 0)
    sheet_h = top_h + map_h + axis_h + 6 + bottom_h + _PAD
    sheet = Image.new("RGB", (sheet_w, sheet_h), qd.BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    text_block(draw, _PAD)
    mx, my = _PAD + axis_w, top_h

    # ---- points
    canvas = np.full((map_h, map_w, 3), (44, 44, 50), np.uint8)
    if len(P2):
        ok = np.isfinite(P2).all(1)
        pp, zz = to_px(P2[ok, :2]), P2[ok, 2]
        cc = np.clip(np.round(np.asarray(cols)[ok] * 255), 0, 255).astype(np.uint8)
        ix, iy = np.floor(pp[:, 0]).astype(np.int64), np.floor(pp[:, 1]).astype(np.int64)
        inside = (ix >= 0) & (ix < map_w) & (iy >= 0) & (iy < map_h)
        ix, iy, zz, cc = ix[inside], iy[inside], zz[inside], cc[inside]
        dots = 2 if len(ix) < map_w * map_h / 25 else 1
        order = np.argsort(-zz, kind="stable")  # highest first: np.unique keeps the first occurrence
        for dy in range(dots):
            for dx in range(dots):
                jx, jy = np.minimum(ix + dx, map_w - 1), np.minimum(iy + dy, map_h - 1)
                lin = (jy * map_w + jx)[order]
                _, first = np.unique(lin, return_index=True)
                sel = order[first]
                canvas[jy[sel], jx[sel]] = cc[sel]
    sheet.paste(Image.fromarray(canvas), (mx, my))

    # ---- grid and tick labels
    def grid_values(a, b):
        return np.arange(math.ceil(a / step) * step, b + 1e-9 * step, step)

    for gx in grid_values(lo[0], hi[0]):
        px = mx + (gx - lo[0]) * sc
        draw.line([(px, my), (px, my + map_h)], fill=(75, 75, 85))
        lab = _fmt(gx, step)
        draw.text((px - qd.text_width(fsmall, lab) / 2, my + map_h + 3), lab, fill=qd.TEXT_DIM, font=fsmall)
    for gy in grid_values(lo[1], hi[1]):
        py = my + (hi[1] - gy) * sc
        draw.line([(mx, py), (mx + map_w, py)], fill=(75, 75, 85))
        lab = _fmt(gy, step)
        draw.text((mx - 4 - qd.text_width(fsmall, lab), py - 6), lab, fill=qd.TEXT_DIM, font=fsmall)
    draw.rectangle([mx - 1, my - 1, mx + map_w, my + map_h], outline=(120, 120, 130))
    draw.text((mx + map_w - qd.text_width(f, f"+{axes[0]} >"), my + map_h + 3 + 12), f"+{axes[0]} >",
              fill=qd.TEXT, font=f)
    draw.text((_PAD, my), f"+{axes[1]} ^", fill=qd.TEXT, font=f)
    # scale bar (one grid step) in the map's lower left corner
    bx, by = mx + 10, my + map_h - 12
    draw.rectangle([bx - 4, by - 16, bx + step * sc + 4 + 60, by + 5], fill=(20, 20, 24))
    draw.line([(bx, by), (bx + step * sc, by)], fill=(255, 255, 255), width=3)
    draw.line([(bx, by - 4), (bx, by + 4)], fill=(255, 255, 255), width=2)
    draw.line([(bx + step * sc, by - 4), (bx + step * sc, by + 4)], fill=(255, 255, 255), width=2)
    draw.text((bx + step * sc + 6, by - 13), f"{_fmt(step, step)} units", fill=(255, 255, 255), font=fsmall)

    # ---- cameras: ground truth underneath, then the estimate (translucent frusta, centre dots, labels)
    off = np.array([mx, my], np.float64)
    d = 0.07 * float((hi - lo).max())

    def tri(c, fw, rt, half_tan):
        a = c[:2]
        p1 = a + d * (fw[:2] - half_tan * rt[:2])
        p2 = a + d * (fw[:2] + half_tan * rt[:2])
        return [tuple(v) for v in to_px(np.stack([a, p1, p2])) + off]

    def half_tan_of(fr):
        K = data.Ks[fr] if data.Ks is not None and fr < len(data.Ks) else None
        if K is None or not np.isfinite(K).all() or K[0, 0] <= 0:
            return 0.5
        return float(min(2.0, (data.W / 2) / K[0, 0]))

    picks = {}
    for s in np.unique(shots_here) if F else []:
        m = idx[shots_here[idx] == s]
        if len(m):
            picks[int(s)] = (m, m[np.unique(np.round(np.linspace(0, len(m) - 1, min(len(m), 3))).astype(int))])
    if G2 is not None:
        gpx = to_px(G2[:, :2]) + off
        pos = {int(m): i for i, m in enumerate(gt_idx)}
        for _, pick in picks.values():
            for fr in pick:
                if int(fr) in pos:
                    i = pos[int(fr)]
                    draw.polygon(tri(G2[i], Gf2[i], Gr2[i], half_tan_of(int(fr))), outline=qd.GT_COLOR, width=1)
        for fr in idx:
            if int(fr) in pos:
                draw.line([tuple(to_px(C2[fr, :2]) + off), tuple(gpx[pos[int(fr)]])], fill=qd.GT_COLOR, width=1)
        for p in gpx:
            draw.ellipse([p[0] - 4, p[1] - 4, p[0] + 4, p[1] + 4], outline=qd.GT_COLOR, width=1)
    overlay = Image.new("RGBA", sheet.size, (0, 0, 0, 0))
    odraw = ImageDraw.Draw(overlay)
    for s, (m, pick) in picks.items():
        for fr in pick:
            odraw.polygon(tri(C2[fr], fwd2[fr], right2[fr], half_tan_of(fr)), fill=qd.shot_color(s) + (70,))
    sheet.paste(Image.alpha_composite(sheet.convert("RGBA"), overlay).convert("RGB"))
    draw = ImageDraw.Draw(sheet)
    drawn_frusta, label_boxes = [], []
    for s, (m, pick) in picks.items():
        col = qd.shot_color(s)
        path = to_px(C2[m, :2]) + off
        if len(path) > 1:
            draw.line([tuple(p) for p in path], fill=col, width=1)
        for fr in pick:
            poly = tri(C2[fr], fwd2[fr], right2[fr], half_tan_of(fr))
            draw.polygon(poly, outline=(0, 0, 0), width=4)
            draw.polygon(poly, outline=col, width=2)
            drawn_frusta.append(int(fr))
        for p in path:
            draw.ellipse([p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2], fill=col, outline=(0, 0, 0))
        # the label beside the shot's first camera, moved down while it would cover another label
        lab = f"shot {s}"
        lw, lh = qd.text_width(f, lab), qd.line_height(f)
        x, y = path[0][0] + 8, path[0][1] - lh / 2
        while any(x < bx1 and bx0 < x + lw and y < by1 and by0 < y + lh for bx0, by0, bx1, by1 in label_boxes):
            y += lh
        label_boxes.append((x, y, x + lw, y + lh))
        draw.text((x, y), lab, fill=col, font=f, stroke_width=2, stroke_fill=(0, 0, 0))
    if not F:
        draw.text((mx + 12, my + 12), "no cameras to draw", fill=qd.WARN, font=ftitle)
    bottom_block(draw, my + map_h + axis_h + 6)
    meta.update({"source": source, "n_frames": int(F), "registered": [int(i) for i in idx],
                 "unregistered": [int(i) for i in unreg], "frusta": drawn_frusta, "n_points": int(len(pts)),
                 "map_box": [int(mx), int(my), int(mx + map_w), int(my + map_h)],
                 "world_to_px": {"lo": [float(v) for v in lo], "hi": [float(v) for v in hi], "scale": float(sc)},
                 "basis": B.tolist(), "gt_aligned": G2 is not None, "notes": notes,
                 "text": [t for _, _, t in bottom]})
    return sheet, meta


# ================================================================================================ entry points
def _is_our_png(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            return META_KEY in getattr(im, "text", {})
    except Exception:  # noqa: BLE001
        return False


def write_contact_sheets(project_dir: str | Path, out_dir: str | Path | None = None, frames_per_shot: int = 6,
                         max_width: int = 1600) -> list[Path]:
    """Write one contact sheet per shot and the cameras' top view; return the written paths.

    ``out_dir`` defaults to ``PROJECT/qc/``. Sheets left there by an earlier run for shots that no longer exist
    are removed (only PNGs this module wrote, recognised by their ``showmaker-qc`` text chunk).
    """
    if frames_per_shot < 1:
        raise ValueError(f"frames_per_shot must be >= 1, got {frames_per_shot}")
    if max_width < 200:
        raise ValueError(f"max_width must be >= 200 pixels, got {max_width}")
    data = load_project_data(project_dir)
    out = Path(out_dir) if out_dir is not None else Path(project_dir) / QC_DIR
    out.mkdir(parents=True, exist_ok=True)
    written = []
    shots = [int(s) for s in np.unique(data.shot_ids)] if data.F else []
    for s in shots:
        img, meta = render_shot_sheet(data, s, len(shots), frames_per_shot, max_width)
        path = out / f"shot_{s:03d}.png"
        atomic_write_bytes(path, qd.png_bytes(img, meta))
        written.append(path)
    img, meta = render_top_view(data, max_width)
    path = out / "cameras_top.png"
    atomic_write_bytes(path, qd.png_bytes(img, meta))
    written.append(path)
    keep = {p.name for p in written}
    for old in sorted(out.glob("shot_*.png")):
        if old.name not in keep and _is_our_png(old):
            old.unlink()
    return written


def add_arguments(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``PROJECT [--out DIR] [--frames-per-shot N] [--max-width PX]`` to ``ap`` (e.g. a CLI subparser)."""
    ap.add_argument("project", help="project directory")
    ap.add_argument("--out", default=None, help=f"output folder (default: PROJECT/{QC_DIR}/)")
    ap.add_argument("--frames-per-shot", type=int, default=6,
                    help="frames sampled evenly through each shot, besides its cut frames (default 6)")
    ap.add_argument("--max-width", type=int, default=1600, help="sheet width limit in pixels (default 1600)")
    return ap


def run(args: argparse.Namespace) -> int:
    """Write the sheets for parsed :func:`add_arguments` options; print the paths; 0 on success, 1 on error."""
    try:
        paths = write_contact_sheets(args.project, args.out, args.frames_per_shot, args.max_width)
    except (FileNotFoundError, ValueError, OSError) as exc:
        print(f"showmaker qc: error: {exc}", file=sys.stderr)
        return 1
    for p in paths:
        print(p)
    return 0


def qc_main(argv: Sequence[str] | None = None) -> int:
    """``showmaker qc PROJECT [--out DIR] [--frames-per-shot N]``: write the sheets, print their paths."""
    ap = add_arguments(argparse.ArgumentParser(prog="showmaker qc", description=(
        "Contact sheets to check every estimate of a project: one PNG per shot (frames with masks, keypoints, "
        "SMPL skeletons, beside the ground truth when the project has one) and the cameras seen from above.")))
    args = ap.parse_args(argv)
    if args.frames_per_shot < 1:
        ap.error("--frames-per-shot must be >= 1")
    return run(args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(qc_main())
