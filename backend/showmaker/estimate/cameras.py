"""Cameras and sparse stage points by Structure-from-Motion (METHOD section 1, "Cameras", TV-show setting).

pycolmap 4.x runs the whole chain on the CPU:

1. the clip's frames (and the optional background images of the set) are written as PNGs into ``workdir``, one
   folder per camera (by default one camera per shot: frames of a shot share their intrinsics), with colmap
   masks beside them (black = ignore): actor pixels, grown by a few pixels, get no features;
2. SIFT features (``pycolmap.extract_features``), then matching: exhaustive for small clips, otherwise sequential
   within each shot plus exhaustive among key frames of all shots and the background images;
3. global SfM (GLOMAP, ``pycolmap.global_mapping``; after ``calibrate_view_graph`` when no focal length is
   known), with incremental mapping (``pycolmap.incremental_mapping``) as the fallback;
4. colmap's ``cam_from_world`` (world-to-camera, x right / y down / z forward, as OpenCV) becomes our ``viewmat``
   as is, its camera becomes ``K``: colmap also puts pixel centres at +0.5 (checked in the tests: a blob centred
   on pixel (i, j) gives a SIFT keypoint at (i + 0.5, j + 0.5)).

The result has the layout of :func:`showmaker.estimate.oracle.oracle_cameras_and_points` (less ``gt_from_est``).

The module also holds the evaluation against ground truth: a Umeyama similarity of the camera centres, then
rotation and relative translation errors (:func:`camera_errors`).
"""
from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "CameraConfig",
    "CameraEstimationError",
    "align_similarity",
    "camera_errors",
    "colmap_camera_to_K",
    "estimate_cameras",
    "rigid3d_to_viewmat",
    "rotation_angle_deg",
    "umeyama",
]

log = logging.getLogger(__name__)

MAPPERS = ("auto", "global", "incremental")
CAMERA_PER = ("shot", "clip", "frame")


class CameraEstimationError(RuntimeError):
    """SfM could not give every shot a camera in one common frame; the message says which frames and what to do."""


@dataclass(frozen=True)
class CameraConfig:
    """Settings of :func:`estimate_cameras` (ours unless stated; the paper gives none).

    mapper: ``"global"`` (GLOMAP: copes best with panning shots, METHOD section 1), ``"incremental"`` (colmap's
        classic mapper) or ``"auto"``: global first, incremental when the global run fails, splits into several
        models or registers less than ``min_registered_fraction`` of the frames; the run registering more frames
        (in one model) wins.
    camera_per: which frames share intrinsics: ``"shot"`` (a shot is one camera at one zoom; the default),
        ``"clip"`` (one camera for the whole clip) or ``"frame"`` (zooming shots).
    camera_model: colmap camera model: ``"SIMPLE_PINHOLE"`` (f, cx, cy), ``"PINHOLE"`` (fx, fy, cx, cy) or
        ``"SIMPLE_RADIAL"`` / ``"RADIAL"`` (plus radial distortion, which ``K`` cannot hold: it is reported and
        the pipeline's pinhole cameras ignore it).
    focal_px: the clip frames' focal length in pixels when known (all shots; per-shot values go to
        :func:`estimate_cameras`'s ``shot_focal_px``). ``None``: colmap's guess (1.2 x the larger image side),
        refined by bundle adjustment.
    refine_focal: ``"auto"`` refines the focal lengths in bundle adjustment only when none was given; ``"yes"`` /
        ``"no"`` force it. Shots whose camera barely moves (a TV camera on a pedestal) do not constrain the focal
        length: refined from a guess it drifts (x2 on the default synthetic clip), so a known focal length (the
        user's, or a monocular model's field of view) is best kept fixed.
    calibrate_view_graph: run ``pycolmap.calibrate_view_graph`` (focal lengths from the fundamental matrices)
        before global mapping when no focal length is given. Off by default: on low-parallax shots it returned
        focal lengths 1.6x off and global mapping then lost both wide shots of the synthetic clip; on the box room
        it changed nothing.
    max_num_features: SIFT features per image.
    max_image_size: frames larger than this (pixels, larger side) are downscaled for feature extraction only
        (keypoints come back in full-resolution pixels).
    mask_dilate_px: actor masks grow by this many pixels before they hide features (silhouette edges move with
        the actor).
    exhaustive_max_images: match every pair of images up to this many images; above it, pairs are sequential
        within each shot (``sequential_overlap`` neighbours) plus all pairs among every ``keyframe_stride``-th frame
        of each shot and the background images.
    min_num_matches: verified matches a pair needs to count in mapping.
    min_registered_fraction: ``"auto"`` tries the other mapper below this fraction of registered clip frames.
    allow_partial: when the clip does not reconstruct as one model (shots that see nothing in common), keep the
        largest model and report the frames without a camera, instead of raising :class:`CameraEstimationError`.
    max_reproj_error_px: sparse points with a larger mean reprojection error are dropped.
    min_track_len: sparse points seen in fewer images are dropped.
    num_threads: colmap threads (-1: all cores).
    seed: colmap's random seed (runs are repeatable for a given seed and thread count).
    verbose: let colmap log at INFO level (it logs warnings and errors only otherwise).
    """

    mapper: str = "auto"
    camera_per: str = "shot"
    camera_model: str = "SIMPLE_PINHOLE"
    focal_px: float | None = None
    refine_focal: str = "auto"
    calibrate_view_graph: bool = False
    max_num_features: int = 4096
    max_image_size: int = 1600
    mask_dilate_px: int = 4
    exhaustive_max_images: int = 150
    sequential_overlap: int = 10
    keyframe_stride: int = 4
    min_num_matches: int = 15
    min_registered_fraction: float = 0.9
    allow_partial: bool = False
    max_reproj_error_px: float = 4.0
    min_track_len: int = 2
    num_threads: int = -1
    seed: int = 0
    verbose: bool = False

    def validate(self) -> None:
        if self.mapper not in MAPPERS:
            raise ValueError(f"CameraConfig.mapper: unknown mapper {self.mapper!r}; "
                             f"expected one of {', '.join(MAPPERS)}")
        if self.camera_per not in CAMERA_PER:
            raise ValueError(f"CameraConfig.camera_per: {self.camera_per!r}; expected one of {', '.join(CAMERA_PER)}")
        if self.camera_model not in ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
            raise ValueError(f"CameraConfig.camera_model: {self.camera_model!r} is not a supported colmap model")
        if self.focal_px is not None and not self.focal_px > 0:
            raise ValueError(f"CameraConfig.focal_px must be positive, got {self.focal_px}")
        if self.refine_focal not in ("auto", "yes", "no"):
            raise ValueError(f"CameraConfig.refine_focal: {self.refine_focal!r}; expected auto, yes or no")


# ----------------------------------------------------------------------------------------------------------------
# Conversions (pure; tested exactly)
# ----------------------------------------------------------------------------------------------------------------

def rigid3d_to_viewmat(cam_from_world) -> np.ndarray:
    """colmap ``cam_from_world`` (a ``pycolmap.Rigid3d`` or its 3x4 matrix) -> our OpenCV ``viewmat`` [4, 4].

    colmap's camera frame is OpenCV's (x right, y down, z forward) and ``cam_from_world`` maps world points to
    camera points, exactly our world-to-camera ``viewmat``: only the homogeneous row is added.
    """
    M = np.asarray(cam_from_world.matrix() if hasattr(cam_from_world, "matrix") else cam_from_world, np.float64)
    if M.shape != (3, 4):
        raise ValueError(f"cam_from_world must be 3x4, got {M.shape}")
    viewmat = np.eye(4)
    viewmat[:3, :] = M
    return viewmat


def colmap_camera_to_K(model: str, params, width: int | None = None, height: int | None = None) -> np.ndarray:
    """colmap camera model name and parameter vector -> ``K`` [3, 3] (pixels, pixel centres at +0.5 in both).

    Distortion parameters (SIMPLE_RADIAL's k, RADIAL's k1 k2, OPENCV's ...) are not part of ``K``.
    """
    p = np.asarray(params, np.float64)
    if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE"):
        fx = fy = p[0]
        cx, cy = p[1], p[2]
    elif model in ("PINHOLE", "OPENCV", "FULL_OPENCV", "OPENCV_FISHEYE"):
        fx, fy, cx, cy = p[:4]
    else:
        raise ValueError(f"colmap_camera_to_K: unsupported camera model {model!r}")
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def _distortion(model: str, params) -> list[float]:
    p = [float(v) for v in params]
    n = {"SIMPLE_PINHOLE": 3, "PINHOLE": 4, "SIMPLE_RADIAL": 3, "RADIAL": 3}.get(model, 4)
    return p[n:]


# ----------------------------------------------------------------------------------------------------------------
# Evaluation against ground truth
# ----------------------------------------------------------------------------------------------------------------

def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True):
    """Least-squares similarity with ``dst ~= s * R @ src + t`` (Umeyama 1991).

    Args:
        src, dst: [N, 3] corresponding points (N >= 3, not all collinear, for a unique rotation).
    Returns:
        (s, R [3, 3] proper rotation, t [3]).
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    U, D, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1.0
    R = U @ S @ Vt
    var_s = (xs**2).sum() / len(src)
    s = float(np.trace(np.diag(D) @ S) / var_s) if with_scale and var_s > 0 else 1.0
    t = mu_d - s * R @ mu_s
    return s, R, t


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """Rotation angle(s) in degrees of rotation matrices [..., 3, 3]."""
    tr = np.trace(R, axis1=-2, axis2=-1)
    return np.degrees(np.arccos(np.clip((tr - 1.0) / 2.0, -1.0, 1.0)))


def _mean_rotation(Rs: np.ndarray) -> np.ndarray:
    """Chordal L2 mean of rotations [N, 3, 3]."""
    U, _, Vt = np.linalg.svd(Rs.sum(0))
    S = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ S @ Vt


def align_similarity(est_viewmats: np.ndarray, gt_viewmats: np.ndarray, method: str = "auto") -> np.ndarray:
    """The similarity ``S`` [4, 4] taking estimated world coordinates to ground truth (``x_gt = S x_est``).

    ``method="centers"``: Umeyama on the camera centres. ``"rotations"``: the rotation from the cameras'
    orientations (chordal mean of ``R_gt^T R_est``), then scale and translation from the centres; ``"auto"``
    uses the centres unless they are (nearly) collinear, which leaves a rotation about their line free (a clip
    whose camera only dollies or pans). Inputs: [N, 4, 4] registered frames only.
    """
    R_est, R_gt = est_viewmats[:, :3, :3], gt_viewmats[:, :3, :3]
    c_est = -np.einsum("nji,nj->ni", R_est, est_viewmats[:, :3, 3])
    c_gt = -np.einsum("nji,nj->ni", R_gt, gt_viewmats[:, :3, 3])
    method = _resolve_alignment(c_gt, method)
    if method == "centers":
        s, R, t = umeyama(c_est, c_gt)
    elif method == "rotations":
        # R_est ~= R_gt @ R  (x_c = R_gt x_gt = R_gt (s R x_est + t) / s ...): R ~= R_gt^T R_est
        R = _mean_rotation(np.einsum("nji,njk->nik", R_gt, R_est))
        xs = (c_est - c_est.mean(0)) @ R.T
        xd = c_gt - c_gt.mean(0)
        denom = (xs**2).sum()
        s = float((xs * xd).sum() / denom) if denom > 1e-12 else 1.0
        t = c_gt.mean(0) - s * R @ c_est.mean(0)
    else:
        raise ValueError(f"align_similarity: unknown method {method!r}")
    S = np.eye(4)
    S[:3, :3] = s * R
    S[:3, 3] = t
    return S


def _resolve_alignment(c_gt: np.ndarray, method: str) -> str:
    """'auto' -> 'centers' unless the true camera centres [N, 3] are (nearly) collinear or coincident."""
    if method != "auto":
        return method
    sv = np.linalg.svd(c_gt - c_gt.mean(0), compute_uv=False) if len(c_gt) >= 3 else np.zeros(3)
    return "centers" if sv[0] > 0 and sv[1] > 0.05 * sv[0] else "rotations"


def camera_errors(est_viewmats: np.ndarray, gt_viewmats: np.ndarray, registered=None,
                  scene_size: float | None = None, method: str = "auto") -> dict:
    """Accuracy of estimated cameras against ground truth, up to the similarity SfM cannot know.

    Args:
        est_viewmats: [F, 4, 4] estimated viewmats (NaN where unregistered).
        gt_viewmats: [F, 4, 4] true viewmats.
        registered: [F] bool (default: the finite estimates).
        scene_size: the length translation errors are divided by (e.g. the room's diagonal); default
            ``geometry.scene_radius`` of the true camera centres.
        method: alignment, see :func:`align_similarity`.
    Returns:
        dict: ``rot_err_deg`` [F] and ``trans_err`` [F] (NaN where unregistered; translation error relative to
        ``scene_size``), ``rot_mean_deg``, ``rot_median_deg``, ``rot_max_deg``, ``trans_mean``, ``trans_median``,
        ``trans_max``, ``registered_fraction``, ``gt_from_est`` [4, 4], ``scene_size``, ``alignment`` (the method
        used), and the alignment-free
        relative rotation error over all pairs of registered frames (angle of
        ``(R_i R_j^T)_est (R_i R_j^T)_gt^T``): ``rel_rot_mean_deg``, ``rel_rot_max_deg``. The absolute rotation
        error also carries the alignment's own error (Umeyama on centres that span little), the relative one
        does not.
    """
    from ..geometry import scene_radius

    est = np.asarray(est_viewmats, np.float64)
    gt = np.asarray(gt_viewmats, np.float64)
    F = len(gt)
    reg = np.isfinite(est).all(axis=(1, 2)) if registered is None else np.asarray(registered, bool).copy()
    reg &= np.isfinite(est).all(axis=(1, 2))
    c_gt_all = -np.einsum("nji,nj->ni", gt[:, :3, :3], gt[:, :3, 3])
    if scene_size is None:
        scene_size = scene_radius(c_gt_all)
    rot = np.full(F, np.nan)
    trans = np.full(F, np.nan)
    out = {"registered_fraction": float(reg.mean()) if F else 0.0, "scene_size": float(scene_size)}
    out["alignment"] = _resolve_alignment(c_gt_all[reg], method) if reg.sum() >= 2 else "none"
    if reg.sum() >= 2:
        S = align_similarity(est[reg], gt[reg], method)
        s = np.cbrt(np.linalg.det(S[:3, :3]))
        R_S = S[:3, :3] / s
        R_al = est[reg, :3, :3] @ R_S.T
        rot[reg] = rotation_angle_deg(np.einsum("nij,nkj->nik", R_al, gt[reg, :3, :3]))
        c_est = -np.einsum("nji,nj->ni", est[reg, :3, :3], est[reg, :3, 3])
        c_al = c_est @ S[:3, :3].T + S[:3, 3]
        trans[reg] = np.linalg.norm(c_al - c_gt_all[reg], axis=1) / scene_size
        out["gt_from_est"] = S
        Re, Rg = est[reg, :3, :3], gt[reg, :3, :3]
        i, j = np.triu_indices(len(Re), 1)
        rel_e = np.einsum("nab,ncb->nac", Re[i], Re[j])
        rel_g = np.einsum("nab,ncb->nac", Rg[i], Rg[j])
        rel = rotation_angle_deg(np.einsum("nab,ncb->nac", rel_e, rel_g))
        out["rel_rot_mean_deg"], out["rel_rot_max_deg"] = float(rel.mean()), float(rel.max())
    else:
        out["rel_rot_mean_deg"] = out["rel_rot_max_deg"] = float("nan")
        out["gt_from_est"] = np.full((4, 4), np.nan)
    out["rot_err_deg"], out["trans_err"] = rot, trans
    for name, v in (("rot", rot), ("trans", trans)):
        unit = "_deg" if name == "rot" else ""
        ok = v[np.isfinite(v)]
        out[f"{name}_mean{unit}"] = float(ok.mean()) if len(ok) else float("nan")
        out[f"{name}_median{unit}"] = float(np.median(ok)) if len(ok) else float("nan")
        out[f"{name}_max{unit}"] = float(ok.max()) if len(ok) else float("nan")
    return out


# ----------------------------------------------------------------------------------------------------------------
# The estimator
# ----------------------------------------------------------------------------------------------------------------

def _check_inputs(frames, actor_masks, shot_ids):
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"estimate_cameras: frames must be uint8 [F, H, W, 3] (RGB); got {frames.dtype} {frames.shape}")
    F, H, W = frames.shape[:3]
    if F < 2:
        raise ValueError("estimate_cameras: SfM needs at least 2 frames")
    if actor_masks is not None:
        actor_masks = np.asarray(actor_masks)
        if actor_masks.shape != (F, H, W):
            raise ValueError(f"estimate_cameras: actor_masks must be [F, H, W] = {(F, H, W)}; got {actor_masks.shape}")
        actor_masks = actor_masks.astype(bool)
    shot_ids = np.asarray(shot_ids).reshape(-1)
    if shot_ids.shape != (F,):
        raise ValueError(f"estimate_cameras: shot_ids must be [F] = [{F}]; got {shot_ids.shape}")
    return frames, actor_masks, shot_ids.astype(np.int64)


def _write_png(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise OSError(f"cannot write {path}")


class _QuietColmap:
    """Lower colmap's glog level for the duration of a block (restored afterwards)."""

    def __init__(self, verbose: bool):
        self.verbose = verbose

    def __enter__(self):
        import pycolmap

        self.old = pycolmap.logging.minloglevel
        if not self.verbose:
            pycolmap.logging.minloglevel = 1  # WARNING
        return self

    def __exit__(self, *exc):
        import pycolmap

        pycolmap.logging.minloglevel = self.old
        return False


def _image_layout(F: int, shot_ids: np.ndarray, n_bg: int, camera_per: str):
    """Relative image names; the folder decides which images share a colmap camera (CameraMode.PER_FOLDER)."""
    names = []
    for f in range(F):
        folder = {"shot": f"shot_{shot_ids[f]:03d}", "clip": "clip", "frame": f"frame_{f:05d}"}[camera_per]
        names.append(f"{folder}/frame_{f:05d}.png")
    bg_names = [f"bg_{i:04d}/bg_{i:04d}.png" for i in range(n_bg)]  # a camera per background image
    return names, bg_names


def _pairs(names, bg_names, shot_ids, cfg: CameraConfig):
    """Image pairs for large clips: sequential within shots, exhaustive among key frames and background images."""
    pairs = set()
    shots = {}
    for f, s in enumerate(shot_ids):
        shots.setdefault(int(s), []).append(f)
    keys = list(bg_names)
    for frames in shots.values():
        for a, fa in enumerate(frames):
            for fb in frames[a + 1 : a + 1 + cfg.sequential_overlap]:
                pairs.add((names[fa], names[fb]))
        keys += [names[f] for f in frames[:: max(1, cfg.keyframe_stride)]]
        if frames[-1] not in frames[:: max(1, cfg.keyframe_stride)]:
            keys.append(names[frames[-1]])
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            pairs.add((a, b))
    return sorted(pairs)


def _run_global(db: Path, image_dir: Path, out: Path, cfg: CameraConfig, calibrate: bool, refine_focal: bool):
    import pycolmap

    if calibrate:
        opts = pycolmap.ViewGraphCalibrationOptions()
        opts.random_seed = cfg.seed
        pycolmap.calibrate_view_graph(db, opts)
    opts = pycolmap.GlobalPipelineOptions()
    opts.random_seed = cfg.seed
    opts.num_threads = cfg.num_threads
    opts.min_num_matches = cfg.min_num_matches
    opts.min_model_size = 3
    opts.mapper.random_seed = cfg.seed
    opts.mapper.num_threads = cfg.num_threads
    opts.mapper.bundle_adjustment.refine_focal_length = refine_focal
    out.mkdir(parents=True, exist_ok=True)
    return pycolmap.global_mapping(db, image_dir, out, opts)


def _run_incremental(db: Path, image_dir: Path, out: Path, cfg: CameraConfig, refine_focal: bool):
    import pycolmap

    opts = pycolmap.IncrementalPipelineOptions()
    opts.random_seed = cfg.seed
    opts.num_threads = cfg.num_threads
    opts.min_num_matches = cfg.min_num_matches
    opts.min_model_size = 3
    opts.mapper.random_seed = cfg.seed
    opts.mapper.num_threads = cfg.num_threads
    opts.ba_refine_focal_length = refine_focal
    opts.mapper.abs_pose_refine_focal_length = refine_focal
    out.mkdir(parents=True, exist_ok=True)
    return pycolmap.incremental_mapping(db, image_dir, out, opts)


def _models_summary(recs: dict, name_to_frame: dict) -> list[dict]:
    """Per model: its key and the clip frames it registered, largest first."""
    models = []
    for key, rec in recs.items():
        frames = sorted(name_to_frame[rec.image(i).name] for i in rec.reg_image_ids()
                        if rec.image(i).name in name_to_frame)
        models.append({"key": key, "frames": frames, "n_images": rec.num_reg_images()})
    models.sort(key=lambda m: (-len(m["frames"]), -m["n_images"]))
    return models


def _frame_ranges(frames) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8'."""
    frames = sorted(frames)
    out, start = [], None
    for i, f in enumerate(frames):
        if start is None:
            start = f
        if i == len(frames) - 1 or frames[i + 1] != f + 1:
            out.append(f"{start}" if start == f else f"{start}-{f}")
            start = None
    return ", ".join(out) if out else "none"


def estimate_cameras(frames: np.ndarray, actor_masks: np.ndarray | None, shot_ids, cfg: CameraConfig = CameraConfig(),
                     background_images: list[np.ndarray] | None = None, workdir: Path | str | None = None,
                     shot_focal_px: Mapping[int, float] | None = None) -> dict:
    """Per-frame cameras and a sparse stage point cloud by SfM (pycolmap 4.x, CPU).

    Args:
        frames: [F, H, W, 3] uint8 RGB clip frames.
        actor_masks: [F, H, W] bool, True on actor pixels (no features there); ``None``: nothing masked.
        shot_ids: [F] int shot index per frame (:func:`showmaker.estimate.shots.detect_shots`).
        cfg: see :class:`CameraConfig`.
        background_images: optional extra RGB uint8 images [h, w, 3] of the same set (other episodes, any size);
            they help connect shots that see little in common.
        workdir: a directory the SfM files go to (images, masks, ``database.db``, ``sparse/``); anything of ours
            already there is replaced. Required.
        shot_focal_px: known focal lengths in pixels per shot id (e.g. from a monocular model's field of view);
            they override ``cfg.focal_px`` for the shots listed. With ``camera_per="clip"`` all given values must
            agree.
    Returns:
        dict with ``Ks`` [F, 3, 3] (the shot camera's K; NaN if the shot's camera was never reconstructed),
        ``viewmats`` [F, 4, 4] (OpenCV world-to-camera, NaN for unregistered frames), ``registered`` [F] bool,
        ``points`` [P, 3], ``colors`` [P, 3] in [0, 1], ``vis_frame`` / ``vis_point`` [V] (point p observed in
        frame f, from the SfM tracks), ``bg_Ks`` [B, 3, 3], ``bg_viewmats`` [B, 4, 4], ``bg_registered`` [B],
        ``bg_vis_image`` / ``bg_vis_point`` (the same for background images), and ``report`` (a JSON-able dict:
        ``n_frames``, ``n_registered``, ``registered_fraction``, ``unregistered_frames``, ``per_shot``, ``mapper``
        (the one whose model is returned), ``mappers_tried``, ``matching``, ``n_models``, ``lost_frames`` (frames
        only in discarded models), ``n_background_images``, ``n_background_registered``, ``n_points``,
        ``mean_reproj_error_px``, ``intrinsics`` (per camera folder), ``focal_priors``, ``focal_refined``,
        ``timings_s``, ``config``).
    Raises:
        CameraEstimationError: nothing could be reconstructed, or the shots fall into separate models / a shot has
            no registered frame and ``cfg.allow_partial`` is False (the message lists the frames and suggests adding
            background images of the set).
    """
    import pycolmap

    cfg.validate()
    if workdir is None:
        raise ValueError("estimate_cameras: a workdir is required (the SfM images and database are written there)")
    frames, actor_masks, shot_ids = _check_inputs(frames, actor_masks, shot_ids)
    background_images = list(background_images or [])
    for i, im in enumerate(background_images):
        if im.ndim != 3 or im.shape[-1] != 3 or im.dtype != np.uint8:
            raise ValueError(
                f"estimate_cameras: background_images[{i}] must be uint8 [h, w, 3]; got {im.dtype} {im.shape}")
    F, H, W = frames.shape[:3]
    focals = _focal_per_shot(cfg, shot_focal_px, shot_ids)
    refine_focal = {"yes": True, "no": False, "auto": not focals}[cfg.refine_focal]
    workdir = Path(workdir)
    image_dir, mask_dir, sparse_dir, db = (workdir / "images", workdir / "masks", workdir / "sparse",
                                          workdir / "database.db")
    for p in (image_dir, mask_dir, sparse_dir):
        shutil.rmtree(p, ignore_errors=True)
    for p in (db, workdir / "pairs.txt"):
        p.unlink(missing_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    timings = {}

    # 1. Images and masks (colmap: mask_path/<image name>.png, black = no features).
    t0 = time.perf_counter()
    names, bg_names = _image_layout(F, shot_ids, len(background_images), cfg.camera_per)
    kernel = (cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * cfg.mask_dilate_px + 1,) * 2)
              if cfg.mask_dilate_px > 0 else None)
    for f in range(F):
        _write_png(image_dir / names[f], np.ascontiguousarray(frames[f][..., ::-1]))
        actor = actor_masks[f] if actor_masks is not None else np.zeros((H, W), bool)
        if kernel is not None and actor.any():
            actor = cv2.dilate(actor.astype(np.uint8), kernel) > 0
        _write_png(mask_dir / (names[f] + ".png"), np.where(actor, 0, 255).astype(np.uint8))
    for name, im in zip(bg_names, background_images):
        _write_png(image_dir / name, np.ascontiguousarray(im[..., ::-1]))
        _write_png(mask_dir / (name + ".png"), np.full(im.shape[:2], 255, np.uint8))
    timings["write_images"] = time.perf_counter() - t0

    with _QuietColmap(cfg.verbose):
        pycolmap.set_random_seed(cfg.seed)
        # 2. Features: clip frames (with the focal prior when known), then background images.
        t0 = time.perf_counter()
        ext = pycolmap.FeatureExtractionOptions()
        ext.sift.max_num_features = cfg.max_num_features
        ext.max_image_size = cfg.max_image_size
        ext.num_threads = cfg.num_threads
        ext.use_gpu = False
        reader = pycolmap.ImageReaderOptions()
        reader.mask_path = mask_dir
        reader.camera_model = cfg.camera_model
        pycolmap.extract_features(db, image_dir, image_names=names, camera_mode=pycolmap.CameraMode.PER_FOLDER,
                                  reader_options=reader, extraction_options=ext, device=pycolmap.Device.cpu)
        if bg_names:
            reader_bg = pycolmap.ImageReaderOptions()
            reader_bg.mask_path = mask_dir
            reader_bg.camera_model = cfg.camera_model
            pycolmap.extract_features(db, image_dir, image_names=bg_names,
                                      camera_mode=pycolmap.CameraMode.PER_FOLDER, reader_options=reader_bg,
                                      extraction_options=ext, device=pycolmap.Device.cpu)
        _set_focal_priors(db, names, shot_ids, focals)
        timings["features"] = time.perf_counter() - t0

        # 3. Matching.
        t0 = time.perf_counter()
        mopts = pycolmap.FeatureMatchingOptions()
        mopts.use_gpu = False
        mopts.num_threads = cfg.num_threads
        n_images = F + len(bg_names)
        if n_images <= cfg.exhaustive_max_images:
            matching = "exhaustive"
            pycolmap.match_exhaustive(db, matching_options=mopts, device=pycolmap.Device.cpu)
        else:
            pairs = _pairs(names, bg_names, shot_ids, cfg)
            matching = f"sequential+keyframes ({len(pairs)} pairs)"
            (workdir / "pairs.txt").write_text("".join(f"{a} {b}\n" for a, b in pairs))
            popts = pycolmap.ImportedPairingOptions()
            popts.match_list_path = workdir / "pairs.txt"
            pycolmap.match_image_pairs(db, matching_options=mopts, pairing_options=popts,
                                       device=pycolmap.Device.cpu)
        timings["matching"] = time.perf_counter() - t0

        # 4. Mapping.
        name_to_frame = {n: f for f, n in enumerate(names)}
        order = {"auto": ["global", "incremental"], "global": ["global"], "incremental": ["incremental"]}[cfg.mapper]
        tried, best = [], None
        for mapper in order:
            t0 = time.perf_counter()
            try:
                if mapper == "global":
                    recs = _run_global(db, image_dir, sparse_dir / "global", cfg, refine_focal=refine_focal,
                                       calibrate=cfg.calibrate_view_graph and not focals)
                else:
                    recs = _run_incremental(db, image_dir, sparse_dir / "incremental", cfg, refine_focal=refine_focal)
                error = None
            except Exception as exc:  # colmap raises RuntimeError / ValueError on degenerate inputs
                recs, error = {}, f"{type(exc).__name__}: {exc}"
            timings[f"mapping_{mapper}"] = time.perf_counter() - t0
            models = _models_summary(recs, name_to_frame)
            n_best = len(models[0]["frames"]) if models else 0
            n_split = sum(1 for m in models if m["frames"])
            tried.append({"mapper": mapper, "n_models": n_split, "n_registered_largest": n_best,
                          **({"error": error} if error else {})})
            log.info("SfM %s: %d model(s) with clip frames, largest registers %d / %d frames%s", mapper, n_split,
                     n_best, F, f" ({error})" if error else "")
            score = (n_best, -n_split)
            if best is None or score > best[0]:
                best = (score, mapper, recs, models)
            if n_split == 1 and n_best >= cfg.min_registered_fraction * F:
                break

    _, mapper, recs, models = best
    if not models or not models[0]["frames"]:
        raise CameraEstimationError(
            "estimate_cameras: SfM registered no clip frame "
            f"({'; '.join(t.get('error', t['mapper'] + ': nothing registered') for t in tried)}). "
            "The frames may have too little texture once actors are masked, too little overlap, or too much motion "
            "blur; add background images of the set (background_images=...) or use the web-video path.")
    shots_all = sorted(set(int(s) for s in shot_ids))
    main = models[0]
    others = [m for m in models[1:] if m["frames"]]
    reg_frames = set(main["frames"])
    lost_shots = [s for s in shots_all if not any(f in reg_frames for f in np.flatnonzero(shot_ids == s))]
    if (others or lost_shots) and not cfg.allow_partial:
        parts = [f"model {k}: frames {_frame_ranges(m['frames'])} (shots "
                 f"{', '.join(str(s) for s in sorted(set(int(shot_ids[f]) for f in m['frames'])))})"
                 for k, m in enumerate([main] + others)]
        raise CameraEstimationError(
            f"estimate_cameras: the clip does not reconstruct as one scene ({mapper} mapping): "
            + "; ".join(parts)
            + (f"; shots with no frame in model 0: {', '.join(map(str, lost_shots))}" if lost_shots else "")
            + ". These shots share too few features to be placed in one frame. Add background images of the set "
              "that see what the shots see (background_images=...), or set CameraConfig(allow_partial=True) to keep "
              f"the largest model (frames {_frame_ranges(sorted(set(range(F)) - reg_frames))} would have no camera).")

    rec = recs[main["key"]]
    out = _to_result(rec, names, bg_names, shot_ids, F, mapper, tried, models, matching, timings, cfg)
    out["report"]["focal_priors"] = {str(k): float(v) for k, v in sorted(focals.items())}
    out["report"]["focal_refined"] = bool(refine_focal)
    return out


def _focal_per_shot(cfg: CameraConfig, shot_focal_px, shot_ids) -> dict:
    """Known focal lengths {shot id: f} from cfg.focal_px and the per-shot values (which win)."""
    shots = sorted(set(int(s) for s in shot_ids))
    focals = {s: float(cfg.focal_px) for s in shots} if cfg.focal_px is not None else {}
    for s, f in (shot_focal_px or {}).items():
        if int(s) not in shots:
            raise ValueError(f"estimate_cameras: shot_focal_px names shot {s}, which the clip does not have")
        if not (np.isfinite(f) and f > 0):
            raise ValueError(f"estimate_cameras: shot_focal_px[{s}] must be a positive number, got {f}")
        focals[int(s)] = float(f)
    if cfg.camera_per == "clip" and len(set(focals.values())) > 1:
        raise ValueError("estimate_cameras: camera_per='clip' shares one camera, but the shots' focal lengths differ")
    return focals


def _set_focal_priors(db: Path, names, shot_ids, focals: dict) -> int:
    """Write the known focal lengths into the database's clip cameras (marked as priors); returns how many."""
    if not focals:
        return 0
    import pycolmap

    name_to_shot = {n: int(shot_ids[f]) for f, n in enumerate(names)}
    database = pycolmap.Database.open(db)
    try:
        done = set()
        for image in database.read_all_images():
            shot = name_to_shot.get(image.name)
            if shot is None or shot not in focals or image.camera_id in done:
                continue
            cam = database.read_camera(image.camera_id)
            params = np.array(cam.params, np.float64)
            params[list(cam.focal_length_idxs())] = focals[shot]
            cam.params = params
            cam.has_prior_focal_length = True
            database.update_camera(cam)
            done.add(image.camera_id)
    finally:
        database.close()
    return len(done)


def _to_result(rec, names, bg_names, shot_ids, F, mapper, tried, models, matching, timings, cfg) -> dict:
    name_to_frame = {n: f for f, n in enumerate(names)}
    name_to_bg = {n: i for i, n in enumerate(bg_names)}
    B = len(bg_names)
    Ks = np.full((F, 3, 3), np.nan)
    viewmats = np.full((F, 4, 4), np.nan)
    registered = np.zeros(F, bool)
    bg_Ks = np.full((B, 3, 3), np.nan)
    bg_viewmats = np.full((B, 4, 4), np.nan)
    bg_registered = np.zeros(B, bool)
    image_slot = {}  # colmap image id -> ("f", frame) / ("b", bg index)
    intrinsics = {}
    folder_K = {}
    for image_id in rec.reg_image_ids():
        im = rec.image(image_id)
        cam = rec.camera(im.camera_id)
        K = colmap_camera_to_K(cam.model.name, cam.params)
        V = rigid3d_to_viewmat(im.cam_from_world())
        folder = im.name.split("/")[0]
        folder_K[folder] = K
        intrinsics[folder] = {"model": cam.model.name, "fx": float(K[0, 0]), "fy": float(K[1, 1]),
                              "cx": float(K[0, 2]), "cy": float(K[1, 2]),
                              "distortion": _distortion(cam.model.name, cam.params)}
        if im.name in name_to_frame:
            f = name_to_frame[im.name]
            Ks[f], viewmats[f], registered[f] = K, V, True
            image_slot[image_id] = ("f", f)
        elif im.name in name_to_bg:
            b = name_to_bg[im.name]
            bg_Ks[b], bg_viewmats[b], bg_registered[b] = K, V, True
            image_slot[image_id] = ("b", b)
    for f in np.flatnonzero(~registered):  # unregistered frame of a reconstructed shot camera: its K is known
        folder = names[f].split("/")[0]
        if folder in folder_K:
            Ks[f] = folder_K[folder]

    pts, cols, vis_f, vis_p, bvis_i, bvis_p, errs = [], [], [], [], [], [], []
    for pid in sorted(rec.point3D_ids()):
        p = rec.point3D(pid)
        track = [e.image_id for e in p.track.elements]
        if len(track) < cfg.min_track_len or (p.has_error() and p.error > cfg.max_reproj_error_px):
            continue
        k = len(pts)
        pts.append(p.xyz)
        cols.append(np.asarray(p.color, np.float64) / 255.0)
        errs.append(p.error)
        for image_id in sorted(set(track)):
            slot = image_slot.get(image_id)
            if slot is None:
                continue
            if slot[0] == "f":
                vis_f.append(slot[1])
                vis_p.append(k)
            else:
                bvis_i.append(slot[1])
                bvis_p.append(k)
    per_shot = {}
    for s in sorted(set(int(v) for v in shot_ids)):
        idx = np.flatnonzero(shot_ids == s)
        per_shot[str(s)] = {"frames": int(len(idx)), "registered": int(registered[idx].sum()),
                            "first_frame": int(idx[0]), "last_frame": int(idx[-1])}
    main_frames = set(models[0]["frames"])
    lost = sorted(f for m in models[1:] for f in m["frames"] if f not in main_frames)
    report = {
        "n_frames": int(F),
        "n_registered": int(registered.sum()),
        "registered_fraction": float(registered.mean()),
        "unregistered_frames": [int(f) for f in np.flatnonzero(~registered)],
        "per_shot": per_shot,
        "mapper": mapper,
        "mappers_tried": tried,
        "matching": matching,
        "n_models": int(sum(1 for m in models if m["frames"])),
        "lost_frames": lost,
        "n_background_images": int(B),
        "n_background_registered": int(bg_registered.sum()),
        "n_points": int(len(pts)),
        "mean_reproj_error_px": float(np.mean(errs)) if errs else float("nan"),
        "intrinsics": intrinsics,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "config": asdict(cfg),
    }
    return {
        "Ks": Ks,
        "viewmats": viewmats,
        "registered": registered,
        "points": np.asarray(pts, np.float64).reshape(-1, 3),
        "colors": np.asarray(cols, np.float64).reshape(-1, 3),
        "vis_frame": np.asarray(vis_f, np.int64),
        "vis_point": np.asarray(vis_p, np.int64),
        "bg_Ks": bg_Ks,
        "bg_viewmats": bg_viewmats,
        "bg_registered": bg_registered,
        "bg_vis_image": np.asarray(bvis_i, np.int64),
        "bg_vis_point": np.asarray(bvis_p, np.int64),
        "report": report,
    }
