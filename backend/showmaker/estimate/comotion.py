"""CoMotion adapter: a learned multi-person SMPL regressor and tracker (METHOD.md section 3, first item).

``load_comotion(checkpoint, device)`` loads Apple's CoMotion through its published package
``comotion_demo`` (``github.com/apple/ml-comotion``: ``pip install -e .`` in a clone) from a LOCAL folder
holding the two files its ``get_pretrained_models.sh`` downloads:

* ``comotion_detection_checkpoint.pt`` (detection stage: backbone + detection head),
* ``comotion_refine_checkpoint.pt`` (update stage: the tracking refinement).

The package itself also needs the licensed SMPL neutral model at
``comotion_demo/data/smpl/SMPL_NEUTRAL.pkl`` (``basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl`` from
smpl.is.tue.mpg.de, renamed); it checks for it at import time.

Loading follows the published code: ``comotion.CoMotion(pretrained=False)`` builds the network, then each
stage's ``load_state_dict(torch.load(path, weights_only=True))`` (upstream reads fixed paths inside the
package; we read the user's folder and check the keys so that a wrong file fails with the names of missing
weights).

``CoMotionEstimator.predict(frames, K)`` runs the tracker over a shot's frames and returns the same layout
as :func:`showmaker.estimate.smpl_fit.fit_smpl` (one row per track):

============  ===============  ===================================================================
key           shape            meaning
============  ===============  ===================================================================
pose          [N, F, 24, 3]    SMPL axis-angle; joint 0 = global orientation in the CAMERA frame
betas         [N, 10]          per-track shape (median over the track's frames)
transl_cam    [N, F, 3]        SMPL translation in camera space (OpenCV axes, metres)
pelvis_cam    [N, F, 3]        the decoded pelvis joint in camera space (CoMotion's SMPL)
valid         [N, F] bool      the track exists in that frame (other entries are zeros)
residual      [N, F]           NaN: CoMotion reports no fit residual
track_ids     [N]              CoMotion's track ids
============  ===============  ===================================================================

CoMotion's betas belong to the real SMPL. With the project's procedural body model use
:func:`rebase_to_body_model`, which keeps the joint rotations, sets the betas to zero and moves the
translation so that the pelvis stays where CoMotion put it.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch

from .depth_models import (
    CheckpointNotFoundError,
    ModelCodeMissingError,
    ModelSetupError,
    _check_state_dict,
    _resolve_checkpoint,
    _torch_load_checkpoint,
)

__all__ = [
    "COMOTION_CHECKPOINT_ENV",
    "COMOTION_CHECKPOINT_FLAG",
    "COMOTION_FILES",
    "CoMotionEstimator",
    "load_comotion",
    "rebase_to_body_model",
]

COMOTION_CHECKPOINT_ENV = "SHOWMAKER_COMOTION_CHECKPOINT"
COMOTION_CHECKPOINT_FLAG = "--comotion-checkpoint"
#: The two checkpoint files in the folder, by the stage they belong to.
COMOTION_FILES = {"detection": "comotion_detection_checkpoint.pt", "refine": "comotion_refine_checkpoint.pt"}

_INSTALL = (
    "Install Apple's CoMotion code: git clone https://github.com/apple/ml-comotion && pip install -e ml-comotion "
    "(package 'comotion_demo'), and put the SMPL neutral model at comotion_demo/data/smpl/SMPL_NEUTRAL.pkl "
    "(basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl from https://smpl.is.tue.mpg.de, renamed)."
)
_GET = (
    "Get the weights with the repository's get_pretrained_models.sh (it downloads "
    f"{COMOTION_FILES['detection']} and {COMOTION_FILES['refine']}) and pass the folder that holds them."
)
_FALLBACK = (
    "Without CoMotion the pipeline fits SMPL to detected 2D/3D keypoints by optimisation "
    "(showmaker.estimate.smpl_fit)."
)


def _import_comotion():
    """Import ``comotion_demo``'s model and tracking modules; raise a helpful error when absent."""
    try:
        from comotion_demo.models import comotion  # noqa: PLC0415
        from comotion_demo.utils import track as track_utils  # noqa: PLC0415
    except ImportError as e:
        missing = getattr(e, "name", None)
        detail = f" (missing module {missing!r})" if missing and not str(missing).startswith("comotion_demo") else ""
        raise ModelCodeMissingError(f"CoMotion's code is not installed: cannot import 'comotion_demo'{detail}. {_INSTALL}") from e
    except (AssertionError, OSError) as e:  # its smpl_kinematics checks SMPL_NEUTRAL.pkl on import
        raise ModelSetupError(
            f"CoMotion's package is installed but failed to import ({type(e).__name__}: {e}). It needs the SMPL "
            f"neutral model at comotion_demo/data/smpl/SMPL_NEUTRAL.pkl. {_INSTALL}"
        ) from e
    return comotion, track_utils


def load_comotion(checkpoint: str | os.PathLike | None = None,
                  device: str | torch.device = "cpu") -> "CoMotionEstimator":
    """Load CoMotion from a LOCAL checkpoint folder (see the module docstring).

    ``checkpoint`` None reads ``SHOWMAKER_COMOTION_CHECKPOINT``. Raises :class:`MissingCheckpointError`,
    :class:`CheckpointNotFoundError` (folder or one of its two files missing), :class:`ModelCodeMissingError`
    (``comotion_demo`` not importable), :class:`ModelSetupError` (SMPL file missing) or
    :class:`CorruptCheckpointError` (unreadable file, or keys that do not match the network).
    """
    folder = _resolve_checkpoint(
        checkpoint, what="CoMotion", how_to_get=_GET, env=COMOTION_CHECKPOINT_ENV,
        flag=COMOTION_CHECKPOINT_FLAG, fallback=_FALLBACK,
    )
    if not folder.is_dir():
        raise CheckpointNotFoundError(
            f"the CoMotion checkpoint must be a folder holding {COMOTION_FILES['detection']} and "
            f"{COMOTION_FILES['refine']}; {str(folder)!r} is a file. {_GET}"
        )
    files = {stage: folder / name for stage, name in COMOTION_FILES.items()}
    missing = [p.name for p in files.values() if not p.is_file()]
    if missing:
        raise CheckpointNotFoundError(f"CoMotion checkpoint folder {str(folder)!r} lacks {', '.join(missing)}. {_GET}")
    comotion, track_utils = _import_comotion()
    try:
        model = comotion.CoMotion(use_coreml=False, pretrained=False)
    except Exception as e:  # noqa: BLE001 - surface anything the constructor needs (SMPL file, scenedetect)
        raise ModelSetupError(f"could not build CoMotion's network ({type(e).__name__}: {e}). {_INSTALL}") from e
    for stage, module in (("detection", model.detection_model), ("refine", model.update_step)):
        state = _torch_load_checkpoint(files[stage], f"CoMotion {stage}")
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        _check_state_dict(module, state, files[stage], f"CoMotion's {stage} stage", strict_unexpected=True)
    model = model.to(device).eval()
    return CoMotionEstimator(model, track_utils, torch.device(device))


class CoMotionEstimator:
    """A loaded CoMotion: :meth:`predict` tracks every person through one shot's frames."""

    def __init__(self, model, track_utils, device: torch.device):
        self.model = model
        self.track_utils = track_utils
        self.device = device

    @torch.inference_mode()
    def predict(self, frames: Sequence[np.ndarray] | np.ndarray, K: np.ndarray) -> dict[str, np.ndarray]:
        """Track all people through ``frames`` (F RGB uint8 images [H, W, 3], one shot, in order).

        ``K`` is [3, 3] or per frame [F, 3, 3] (pixels). Returns the dict described in the module docstring.
        Start a new call per shot: the tracker's state does not survive a cut.
        """
        frames = list(frames)
        if not frames:
            raise ValueError("predict() needs at least one frame")
        H, W = np.asarray(frames[0]).shape[:2]
        Ks = np.asarray(K, dtype=np.float32)
        Ks = np.repeat(Ks[None], len(frames), 0) if Ks.ndim == 2 else Ks
        if Ks.shape != (len(frames), 3, 3):
            raise ValueError(f"K must be [3, 3] or [F, 3, 3] with F = {len(frames)}; got {np.asarray(K).shape}")
        self.model.init_tracks((H, W))
        detections, tracks = [], []
        for f, frame in enumerate(frames):
            frame = np.asarray(frame)
            if frame.dtype != np.uint8 or frame.shape != (H, W, 3):
                raise ValueError(f"frame {f}: expected uint8 [{H}, {W}, 3], got {frame.dtype} {frame.shape}")
            image = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).to(self.device)
            K23 = torch.from_numpy(np.ascontiguousarray(Ks[f, :2])).to(self.device)  # CoMotion takes K as [2, 3]
            detection, track = self.model(image, K23)
            detections.append({k: v.cpu() for k, v in detection.items()})
            tracks.append(track.cpu())
        # Post-processing exactly as the package's demo does it.
        # (``torch.stack(tracks, 1)`` on the track states, field by field: [1, F, T, ...] per field.)
        detections = {k: [d[k] for d in detections] for k in detections[0]}
        tracks = {k: torch.stack([getattr(t, k) for t in tracks], 1) for k in ("id", "pose", "trans", "betas")}
        decoder = self.model.smpl_decoder.cpu()
        K_last = torch.from_numpy(np.ascontiguousarray(Ks[-1, :2]))
        track_ref = self.track_utils.cleanup_tracks({"detections": detections, "tracks": tracks}, K_last, decoder,
                                                    min_matched_frames=1)
        self.model.smpl_decoder.to(self.device)
        F_ = len(frames)
        if not track_ref:
            return _empty_result(F_)
        f_idx, t_idx = self.track_utils.convert_to_idxs(track_ref, tracks["id"][0].squeeze(-1).long())
        preds = {k: v[0, f_idx, t_idx] for k, v in tracks.items()}
        ids = preds["id"].reshape(len(preds["id"]), -1)[:, 0].long()
        # SMPLKinematics' "joints" format: the 24 SMPL joints, translation included; joint 0 is the pelvis.
        pelvis = decoder(preds["betas"], preds["pose"], preds["trans"], output_format="joints")[:, 0]
        return _scatter_tracks(
            ids.numpy(), np.asarray(f_idx).reshape(-1), preds["pose"].reshape(-1, 24, 3).numpy(),
            preds["betas"].reshape(-1, 10).numpy(), preds["trans"].reshape(-1, 3).numpy(), pelvis.numpy(), F_,
        )


def _empty_result(n_frames: int) -> dict[str, np.ndarray]:
    return {
        "pose": np.zeros((0, n_frames, 24, 3), np.float32), "betas": np.zeros((0, 10), np.float32),
        "transl_cam": np.zeros((0, n_frames, 3), np.float32), "pelvis_cam": np.zeros((0, n_frames, 3), np.float32),
        "valid": np.zeros((0, n_frames), bool), "residual": np.zeros((0, n_frames), np.float32),
        "track_ids": np.zeros((0,), np.int64),
    }


def _scatter_tracks(ids, frame_idx, pose, betas, trans, pelvis, n_frames: int) -> dict[str, np.ndarray]:
    """Per-detection rows (track id, frame) -> per-track arrays [N, F, ...] (see the module docstring)."""
    track_ids = np.unique(ids)
    out = _empty_result(n_frames)
    N = len(track_ids)
    out["pose"] = np.zeros((N, n_frames, 24, 3), np.float32)
    out["transl_cam"] = np.zeros((N, n_frames, 3), np.float32)
    out["pelvis_cam"] = np.zeros((N, n_frames, 3), np.float32)
    out["valid"] = np.zeros((N, n_frames), bool)
    out["residual"] = np.full((N, n_frames), np.nan, np.float32)
    out["betas"] = np.zeros((N, 10), np.float32)
    out["track_ids"] = track_ids.astype(np.int64)
    row = np.searchsorted(track_ids, ids)
    out["pose"][row, frame_idx] = pose
    out["transl_cam"][row, frame_idx] = trans
    out["pelvis_cam"][row, frame_idx] = pelvis
    out["valid"][row, frame_idx] = True
    for n in range(N):
        out["betas"][n] = np.median(betas[row == n], axis=0)
    return out


def rebase_to_body_model(result: dict[str, np.ndarray], body_model) -> dict[str, np.ndarray]:
    """Adapt a CoMotion result to another SMPL-format body model (e.g. the procedural one).

    Keeps the joint rotations, sets betas to zero (CoMotion's belong to the real SMPL) and sets the
    translation so that the model's pelvis lands on CoMotion's decoded pelvis: with SMPL's kinematics the
    posed pelvis is ``J_0(betas) + transl``, so ``transl = pelvis_cam - J_0(0)``.
    """
    out = dict(result)
    zero_pose = torch.zeros(1, 24, 3)
    j0 = body_model.forward(zero_pose, torch.zeros(1, 10), None, None).joints[0, 0].detach().cpu().numpy()
    out["betas"] = np.zeros_like(result["betas"])
    out["transl_cam"] = np.where(result["valid"][..., None], result["pelvis_cam"] - j0, 0.0).astype(np.float32)
    return out
