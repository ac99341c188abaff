"""Monocular depth models behind one small interface (METHOD.md section 1, "Depth alignment").

``load_depth_model(kind, checkpoint, device)`` returns a :class:`DepthModel` whose
``predict(image uint8 [H, W, 3]) -> depth float32 [H, W]`` gives camera **depth** (planar z, never
disparity) at the input resolution, NaN where the model has no answer (sky, invalid pixels). Two flags
say what the numbers mean:

* ``metric``: True when the values are metres (MoGe-2, Depth Anything V2 metric checkpoints); False when
  they are only defined up to an unknown affine (scale and shift), which the depth alignment (eq. 2-3)
  fits per frame anyway.
* ``native_output``: ``"depth"`` or ``"disparity"``. Depth Anything V2's relative checkpoints predict an
  affine-invariant *inverse* depth; we convert it to depth as ``median(d) / d`` (so the median valid depth
  is 1) and say so here. The inversion assumes the disparity's unknown shift is ~0: a non-zero shift makes
  the converted depth only approximately affine in the true depth (the error grows with distance). The
  alignment's Huber fit absorbs moderate deviations; ``predict_native`` returns the raw disparity for a
  consumer that prefers to align in disparity space.

Weights are never downloaded: every loader takes a LOCAL checkpoint and runs it through the model's own
published code, which must be importable:

=====================  =====================================================  ==============================
kind                   code (import)                                          checkpoint
=====================  =====================================================  ==============================
``moge2``              ``moge`` (``pip install git+https://github.com/        ``model.pt`` from the Hugging
                       microsoft/MoGe.git``), ``moge.model.v2.MoGeModel``     Face repo ``Ruicheng/moge-2-
                                                                              vitl`` (or ``-vitl-normal``,
                                                                              ``-vitb-normal``, ...)
``depth_anything_v2``  ``depth_anything_v2`` (clone ``github.com/             ``depth_anything_v2_vit{s,b,
                       DepthAnything/Depth-Anything-V2`` and put its root     l}.pth`` (relative), or
                       on ``PYTHONPATH``; for metric checkpoints its          ``depth_anything_v2_metric_
                       ``metric_depth`` folder instead)                       {hypersim,vkitti}_vit*.pth``
=====================  =====================================================  ==============================

The checkpoint comes from the ``checkpoint`` argument, else from the environment variable
``SHOWMAKER_DEPTH_CHECKPOINT`` (the CLI flag ``--depth-checkpoint`` sets the argument). Every failure is a
:class:`ModelSetupError` subclass with a message that says what to do; without any depth model the
pipeline still runs with ``--depth none`` (degraded: no depth guidance for the stage or the actors).

How the published code is used (checked against the projects' sources):

* MoGe-2: ``MoGeModel.from_pretrained(path)`` is ``ckpt = torch.load(path, weights_only=True)``,
  ``MoGeModel(**ckpt["model_config"])``, ``load_state_dict(ckpt["model"], strict=False)``. We do the same
  three steps ourselves so that the non-strict load cannot hide a wrong checkpoint (missing keys are an
  error here), and so that a path that does not exist never falls through to ``hf_hub_download``.
  Inference is ``model.infer(image float [3, H, W] in [0, 1], fov_x=...)`` whose ``depth`` is metric
  (scaled by the model's ``scale_head``) and ``inf`` outside its validity mask.
* Depth Anything V2: ``DepthAnythingV2(encoder=..., features=..., out_channels=...)`` (+ ``max_depth`` for
  the metric variant) and ``load_state_dict(torch.load(ckpt, weights_only=True))``. The encoder is read
  from the checkpoint itself (the ViT width). Its ``infer_image`` expects BGR and moves the input to
  whatever GPU exists, so we replicate its preprocessing (RGB / 255, resize keeping the aspect ratio so
  both sides are at least ``input_size`` and multiples of 14, bicubic, ImageNet normalisation) and call
  ``forward``, then resize the output back bilinearly (``align_corners=True``, as upstream).
"""
from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "DEPTH_CHECKPOINT_ENV",
    "DEPTH_CHECKPOINT_FLAG",
    "DEPTH_KINDS",
    "CheckpointNotFoundError",
    "CorruptCheckpointError",
    "DepthAnythingV2Depth",
    "DepthModel",
    "MissingCheckpointError",
    "ModelCodeMissingError",
    "ModelSetupError",
    "MoGe2Depth",
    "load_depth_model",
]

#: Environment variable read when no checkpoint argument is given.
DEPTH_CHECKPOINT_ENV = "SHOWMAKER_DEPTH_CHECKPOINT"
#: The command-line flag that passes a depth checkpoint (named in error messages).
DEPTH_CHECKPOINT_FLAG = "--depth-checkpoint"
DEPTH_KINDS = ("moge2", "depth_anything_v2")

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

# Depth Anything V2 model configurations (the project's README), keyed by the ViT's embedding width.
_DAV2_CONFIGS = {
    384: {"encoder": "vits", "features": 64, "out_channels": [48, 96, 192, 384]},
    768: {"encoder": "vitb", "features": 128, "out_channels": [96, 192, 384, 768]},
    1024: {"encoder": "vitl", "features": 256, "out_channels": [256, 512, 1024, 1024]},
    1536: {"encoder": "vitg", "features": 384, "out_channels": [1536, 1536, 1536, 1536]},
}
_DAV2_WIDTH_KEY = "pretrained.patch_embed.proj.weight"
# max_depth of the published metric checkpoints (metric_depth/README.md): indoor 20 m, outdoor 80 m.
_DAV2_METRIC_MAX_DEPTH = {"hypersim": 20.0, "vkitti": 80.0}


# --------------------------------------------------------------------------------------------- errors
class ModelSetupError(RuntimeError):
    """A learned estimator cannot be set up; the message says what to install or which file to get.

    Shared by the learned-model loaders of ``showmaker.estimate`` (depth models, CoMotion).
    """


class MissingCheckpointError(ModelSetupError):
    """No checkpoint path was given (neither argument nor environment variable)."""


class CheckpointNotFoundError(ModelSetupError, FileNotFoundError):
    """A checkpoint path was given but nothing (or not the expected file) is there."""


class ModelCodeMissingError(ModelSetupError, ImportError):
    """The model's published code (its Python package) is not importable."""


class CorruptCheckpointError(ModelSetupError, ValueError):
    """The file is not a readable checkpoint of the expected model (wrong model, truncated, key mismatch)."""


def _describe_keys(keys, limit: int = 5) -> str:
    keys = sorted(keys)
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")


def _resolve_checkpoint(checkpoint, what: str, how_to_get: str, env: str, flag: str, fallback: str):
    """The checkpoint path from the argument or ``env``; raise a helpful error when there is none."""
    if checkpoint is None or str(checkpoint).strip() == "":
        checkpoint = os.environ.get(env) or None
    if checkpoint is None:
        raise MissingCheckpointError(
            f"no {what} checkpoint given. {how_to_get} Then pass its path with {flag} PATH or set the "
            f"environment variable {env}=PATH. {fallback}"
        )
    path = Path(checkpoint).expanduser()
    if not path.exists():
        raise CheckpointNotFoundError(
            f"{what} checkpoint not found: {str(path)!r} does not exist. {how_to_get}"
        )
    return path


def _torch_load_checkpoint(path: Path, what: str) -> Any:
    """``torch.load(weights_only=True)`` on CPU, turning any failure into :class:`CorruptCheckpointError`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling/zip error means the same thing to the user
        raise CorruptCheckpointError(
            f"{str(path)!r} is not a readable {what} checkpoint ({type(e).__name__}: {str(e)[:200]}). "
            "The download may be truncated or the file may be another model's; download it again."
        ) from e


def _check_state_dict(model: torch.nn.Module, state: dict, path: Path, what: str, strict_unexpected: bool):
    """Compare checkpoint keys with the model's; raise naming a few missing (or unexpected) keys."""
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise CorruptCheckpointError(f"{str(path)!r} does not hold a state dict for {what}")
    want = set(model.state_dict().keys())
    have = set(state.keys())
    missing, unexpected = want - have, have - want
    if missing or (strict_unexpected and unexpected):
        parts = []
        if missing:
            parts.append(f"{len(missing)} of the model's {len(want)} weights are missing, "
                         f"e.g. {_describe_keys(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys, e.g. {_describe_keys(unexpected)}")
        raise CorruptCheckpointError(
            f"{str(path)!r} does not match {what}: " + "; ".join(parts) + ". Is it another model's (or "
            "another size's) checkpoint?"
        )
    try:
        model.load_state_dict(state, strict=strict_unexpected)
    except RuntimeError as e:  # shape mismatches
        raise CorruptCheckpointError(f"{str(path)!r} does not fit {what}: {str(e)[:400]}") from e


def _import_code(module: str, what: str, install: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = getattr(e, "name", None)
        detail = f" (missing module {missing!r})" if missing and missing != module.split(".")[0] else ""
        raise ModelCodeMissingError(
            f"{what}'s code is not installed: cannot import {module!r}{detail}. {install}"
        ) from e


def _check_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"predict() takes an RGB uint8 image [H, W, 3]; got dtype {image.dtype}, shape {image.shape}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"image too small: {image.shape}")
    return image


# ------------------------------------------------------------------------------------------ interface
class DepthModel(ABC):
    """A monocular depth model.

    Attributes:
        kind: ``"moge2"`` or ``"depth_anything_v2"``.
        metric: True if ``predict`` returns metres; False if the depth is affine-ambiguous.
        native_output: ``"depth"`` or ``"disparity"`` (what the network itself predicts).
        device: the torch device it runs on.
    """

    kind: str = ""
    metric: bool = False
    native_output: str = "depth"
    device: torch.device = torch.device("cpu")

    @abstractmethod
    def predict(self, image: np.ndarray, K: np.ndarray | None = None) -> np.ndarray:
        """Depth float32 [H, W] (camera z; NaN where invalid) of an RGB uint8 image [H, W, 3].

        ``K`` [3, 3] (pixels), when known, lets a model that accepts a field of view use it.
        """

    def predict_native(self, image: np.ndarray, K: np.ndarray | None = None) -> np.ndarray:
        """The network's own output [H, W] (depth or disparity, see ``native_output``), float32."""
        return self.predict(image, K)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(metric={self.metric}, native_output={self.native_output!r}, "
                f"device={self.device})")


# ---------------------------------------------------------------------------------------------- MoGe-2
_MOGE_INSTALL = "Install it with: pip install git+https://github.com/microsoft/MoGe.git (package 'moge')."
_MOGE_GET = (
    "Get MoGe-2's weights as the file model.pt of the Hugging Face repository Ruicheng/moge-2-vitl "
    "(or moge-2-vitl-normal / moge-2-vitb-normal / moge-2-vits-normal) and keep it on local disk."
)


class MoGe2Depth(DepthModel):
    """MoGe-2 through ``moge.model.v2.MoGeModel``; metric depth (MoGe-2's scale head).

    ``resolution_level`` (0-9) is passed to ``infer``: more tokens = finer and slower. ``use_fp16`` defaults
    to True on CUDA only.
    """

    kind = "moge2"
    native_output = "depth"

    def __init__(self, model: torch.nn.Module, device: torch.device, resolution_level: int = 9,
                 use_fp16: bool | None = None):
        self.model = model
        self.device = torch.device(device)
        self.metric = hasattr(model, "scale_head")
        self.resolution_level = int(resolution_level)
        self.use_fp16 = (self.device.type == "cuda") if use_fp16 is None else bool(use_fp16)

    @classmethod
    def load(cls, checkpoint: Path, device, **options) -> "MoGe2Depth":
        path = Path(checkpoint)
        if path.is_dir():
            path = path / "model.pt"
            if not path.is_file():
                raise CheckpointNotFoundError(
                    f"MoGe-2 checkpoint folder {str(checkpoint)!r} has no model.pt. {_MOGE_GET}"
                )
        v2 = _import_code("moge.model.v2", "MoGe-2", _MOGE_INSTALL)
        ckpt = _torch_load_checkpoint(path, "MoGe-2")
        if not isinstance(ckpt, dict) or "model_config" not in ckpt or "model" not in ckpt:
            top = sorted(ckpt.keys())[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
            hint = ""
            if isinstance(ckpt, dict) and _DAV2_WIDTH_KEY in ckpt:
                hint = " It looks like a Depth Anything V2 checkpoint: use kind 'depth_anything_v2'."
            raise CorruptCheckpointError(
                f"{str(path)!r} is not a MoGe checkpoint: expected the keys 'model_config' and 'model', found "
                f"{top}.{hint} {_MOGE_GET}"
            )
        try:
            model = v2.MoGeModel(**ckpt["model_config"])
        except Exception as e:  # noqa: BLE001 - a config the class does not accept
            raise CorruptCheckpointError(
                f"{str(path)!r}: its model_config does not build a MoGe-2 model ({type(e).__name__}: {e}); a "
                f"MoGe-1 checkpoint? {_MOGE_GET}"
            ) from e
        # from_pretrained loads non-strictly; an unexpected key is tolerated as upstream does, a missing one is not.
        _check_state_dict(model, ckpt["model"], path, "MoGe-2", strict_unexpected=False)
        model = model.to(device).eval()
        return cls(model, device, **options)

    @torch.inference_mode()
    def predict(self, image: np.ndarray, K: np.ndarray | None = None) -> np.ndarray:
        image = _check_image(image)
        H, W = image.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1).float() / 255.0
        kwargs: dict[str, Any] = {"resolution_level": self.resolution_level, "use_fp16": self.use_fp16}
        if K is not None:
            # MoGe's focal is horizontal FoV based (principal point assumed at the centre).
            kwargs["fov_x"] = float(np.degrees(2.0 * math.atan(0.5 * W / float(np.asarray(K)[0, 0]))))
        out = self.model.infer(x, **kwargs)
        depth = out["depth"]
        if depth.dim() == 3:
            depth = depth[0]
        depth = depth.detach().float().cpu().numpy()
        if depth.shape != (H, W):
            raise RuntimeError(f"MoGe returned depth {depth.shape} for an image {(H, W)}")
        depth = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan)
        return depth.astype(np.float32)


# ----------------------------------------------------------------------------------- Depth Anything V2
_DAV2_INSTALL = (
    "Clone https://github.com/DepthAnything/Depth-Anything-V2 and put the clone's root on PYTHONPATH (it "
    "provides the module 'depth_anything_v2'; pip install -r its requirements.txt). For a metric checkpoint "
    "put its 'metric_depth' folder on PYTHONPATH instead."
)
_DAV2_GET = (
    "Get a checkpoint from the Hugging Face repositories depth-anything/Depth-Anything-V2-Large (file "
    "depth_anything_v2_vitl.pth; -Base / -Small likewise) or, for metric depth, "
    "depth-anything/Depth-Anything-V2-Metric-Hypersim-Large (depth_anything_v2_metric_hypersim_vitl.pth)."
)


def dav2_input_size(height: int, width: int, input_size: int = 518, multiple: int = 14) -> tuple[int, int]:
    """Network input (height, width) for an image, as Depth Anything V2's ``Resize`` computes it:
    keep the aspect ratio, both sides at least ``input_size`` ("lower_bound"), rounded to multiples of 14."""
    scale = max(input_size / height, input_size / width)

    def constrain(x: float) -> int:
        y = int(round(x / multiple) * multiple)
        if y < input_size:
            y = int(math.ceil(x / multiple) * multiple)
        return y

    return constrain(scale * height), constrain(scale * width)


class DepthAnythingV2Depth(DepthModel):
    """Depth Anything V2 through ``depth_anything_v2.dpt.DepthAnythingV2``.

    Relative checkpoints (``metric=False``, ``native_output="disparity"``): the network's affine-invariant
    inverse depth ``d`` becomes depth ``median(d) / d``; pixels with ``d <= disparity_floor * max(d)``
    (sky, "infinitely" far) are NaN. Metric checkpoints (``metric=True``): the network outputs metres.
    """

    kind = "depth_anything_v2"

    def __init__(self, model: torch.nn.Module, device, metric: bool, input_size: int = 518,
                 disparity_floor: float = 1e-3):
        self.model = model
        self.device = torch.device(device)
        self.metric = bool(metric)
        self.native_output = "depth" if metric else "disparity"
        self.input_size = int(input_size)
        self.disparity_floor = float(disparity_floor)

    @classmethod
    def load(cls, checkpoint: Path, device, max_depth: float | None = None, **options) -> "DepthAnythingV2Depth":
        path = Path(checkpoint)
        if path.is_dir():
            found = sorted(path.glob("depth_anything_v2*.pth"))
            if len(found) != 1:
                raise CheckpointNotFoundError(
                    f"Depth Anything V2 checkpoint folder {str(checkpoint)!r} holds {len(found)} "
                    f"depth_anything_v2*.pth files; pass the file itself. {_DAV2_GET}"
                )
            path = found[0]
        dpt = _import_code("depth_anything_v2.dpt", "Depth Anything V2", _DAV2_INSTALL)
        state = raw = _torch_load_checkpoint(path, "Depth Anything V2")
        wrapped = isinstance(state, dict) and isinstance(state.get("model"), dict) and _DAV2_WIDTH_KEY not in state
        if wrapped:
            state = state["model"]  # a training checkpoint wrapping the state dict
        if not isinstance(state, dict) or _DAV2_WIDTH_KEY not in state:
            hint = ""
            if isinstance(raw, dict) and "model_config" in raw:
                hint = " It looks like a MoGe checkpoint: use kind 'moge2'."
            raise CorruptCheckpointError(
                f"{str(path)!r} is not a Depth Anything V2 checkpoint: it has no {_DAV2_WIDTH_KEY!r}.{hint} {_DAV2_GET}"
            )
        width = int(state[_DAV2_WIDTH_KEY].shape[0])
        if width not in _DAV2_CONFIGS:
            raise CorruptCheckpointError(
                f"{str(path)!r}: unknown Depth Anything V2 encoder width {width} (known: {sorted(_DAV2_CONFIGS)})"
            )
        config = dict(_DAV2_CONFIGS[width])
        name = path.name.lower()
        metric = max_depth is not None or "metric" in name
        if metric and max_depth is None:
            max_depth = next((v for k, v in _DAV2_METRIC_MAX_DEPTH.items() if k in name), None)
            if max_depth is None:
                raise ModelSetupError(
                    f"{path.name!r} looks like a metric Depth Anything V2 checkpoint but its name names neither "
                    "hypersim (max_depth 20) nor vkitti (max_depth 80); pass max_depth explicitly"
                )
        if metric:
            config["max_depth"] = float(max_depth)
        try:
            model = dpt.DepthAnythingV2(**config)
        except TypeError as e:
            if metric:
                raise ModelCodeMissingError(
                    f"{path.name!r} is a metric checkpoint but the importable 'depth_anything_v2' is the relative "
                    f"variant (its DepthAnythingV2 takes no max_depth). {_DAV2_INSTALL}"
                ) from e
            raise
        _check_state_dict(model, state, path, f"Depth Anything V2 ({config['encoder']})", strict_unexpected=True)
        model = model.to(device).eval()
        return cls(model, device, metric=metric, **options)

    def _preprocess(self, image: np.ndarray) -> torch.Tensor:
        """RGB uint8 [H, W, 3] -> normalised network input [1, 3, h, w] (h, w multiples of 14)."""
        H, W = image.shape[:2]
        h, w = dav2_input_size(H, W, self.input_size)
        x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)
        mean = torch.tensor(_IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(_IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        return (x - mean) / std

    @torch.inference_mode()
    def predict_native(self, image: np.ndarray, K: np.ndarray | None = None) -> np.ndarray:
        image = _check_image(image)
        H, W = image.shape[:2]
        out = self.model(self._preprocess(image))
        if out.dim() == 3:
            out = out[:, None]
        out = F.interpolate(out.float(), size=(H, W), mode="bilinear", align_corners=True)[0, 0]
        return out.cpu().numpy().astype(np.float32)

    def predict(self, image: np.ndarray, K: np.ndarray | None = None) -> np.ndarray:
        native = self.predict_native(image, K)
        if self.metric:
            return np.where(np.isfinite(native) & (native > 0), native, np.nan).astype(np.float32)
        return disparity_to_depth(native, self.disparity_floor)


def disparity_to_depth(disparity: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    """Relative inverse depth [H, W] -> relative depth ``median(d) / d`` (float32), NaN where
    ``d <= floor * max(d)`` or not finite. Exact up to scale when the disparity's unknown shift is 0."""
    d = np.asarray(disparity, dtype=np.float64)
    finite = np.isfinite(d)
    top = d[finite].max(initial=0.0)
    valid = finite & (d > floor * top) & (d > 0)
    depth = np.full(d.shape, np.nan)
    if valid.any():
        depth[valid] = np.median(d[valid]) / d[valid]
    return depth.astype(np.float32)


# ---------------------------------------------------------------------------------------------- loader
_LOADERS = {"moge2": MoGe2Depth, "depth_anything_v2": DepthAnythingV2Depth}
_HOW_TO_GET = {"moge2": _MOGE_GET, "depth_anything_v2": _DAV2_GET}


def load_depth_model(kind: str = "moge2", checkpoint: str | os.PathLike | None = None,
                     device: str | torch.device = "cpu", **options) -> DepthModel:
    """Load a monocular depth model from a LOCAL checkpoint through its published code.

    Args:
        kind: ``"moge2"`` or ``"depth_anything_v2"``.
        checkpoint: the checkpoint file (MoGe-2: ``model.pt`` or its folder; Depth Anything V2: the
            ``.pth``). None reads ``SHOWMAKER_DEPTH_CHECKPOINT``.
        device: torch device.
        options: per-model settings (MoGe-2: ``resolution_level``, ``use_fp16``; Depth Anything V2:
            ``input_size``, ``max_depth`` (forces the metric variant), ``disparity_floor``).
    Raises:
        MissingCheckpointError, CheckpointNotFoundError, ModelCodeMissingError, CorruptCheckpointError
        (all :class:`ModelSetupError`), ValueError for an unknown kind.
    """
    if kind not in _LOADERS:
        raise ValueError(
            f"unknown depth model kind {kind!r}; choose one of {', '.join(DEPTH_KINDS)} (or run the pipeline "
            "with --depth none to skip depth)"
        )
    path = _resolve_checkpoint(
        checkpoint,
        what={"moge2": "MoGe-2", "depth_anything_v2": "Depth Anything V2"}[kind] + " depth model",
        how_to_get=_HOW_TO_GET[kind],
        env=DEPTH_CHECKPOINT_ENV,
        flag=DEPTH_CHECKPOINT_FLAG,
        fallback="Without a depth model the pipeline still runs with --depth none (degraded mode: no depth "
                 "guidance for the stage or the actors).",
    )
    return _LOADERS[kind].load(path, torch.device(device), **options)
