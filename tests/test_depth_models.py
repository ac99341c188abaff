"""Monocular depth plug-ins: every setup error path, and our pre/post-processing around the published APIs.

No real weights exist here: tiny fake modules that mimic the published code (``moge.model.v2.MoGeModel``,
``depth_anything_v2.dpt.DepthAnythingV2``) are registered in ``sys.modules``. The fakes are transparent
functions of their input, so the tests check what *we* do (image layout, resizing, normalisation, field of
view, output resizing, disparity -> depth, invalid pixels), not a model's accuracy.
"""
import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

from showmaker.estimate import depth_models as dm
from showmaker.estimate.depth_models import (
    CheckpointNotFoundError,
    CorruptCheckpointError,
    MissingCheckpointError,
    ModelCodeMissingError,
    ModelSetupError,
    dav2_input_size,
    disparity_to_depth,
    load_depth_model,
)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(dm.DEPTH_CHECKPOINT_ENV, raising=False)


# ------------------------------------------------------------------------------------------ fake MoGe
class FakeMoGeModel(nn.Module):
    """Mimics moge.model.v2.MoGeModel: built from ``model_config``; ``infer`` returns depth = 1 + 3 * red
    (the input's first channel, expected in [0, 1]), ``inf`` where green is saturated (MoGe's mask)."""

    calls: list = []

    def __init__(self, encoder=None, neck=None, scale_head=None, **kw):
        super().__init__()
        self.encoder = nn.Linear(2, int(encoder["dim"]))
        self.neck = nn.Linear(2, 2)
        if scale_head is not None:
            self.scale_head = nn.Linear(2, 1)

    def infer(self, image, resolution_level=9, use_fp16=True, fov_x=None, **kw):
        FakeMoGeModel.calls.append({"image": image.clone(), "fov_x": fov_x, "use_fp16": use_fp16,
                                    "resolution_level": resolution_level})
        depth = 1.0 + 3.0 * image[0]
        depth = torch.where(image[1] >= 1.0, torch.inf, depth)
        return {"depth": depth, "points": torch.zeros(*depth.shape, 3), "mask": torch.isfinite(depth)}


@pytest.fixture
def fake_moge(monkeypatch):
    FakeMoGeModel.calls = []
    pkg, model_pkg, v2 = (types.ModuleType(n) for n in ("moge", "moge.model", "moge.model.v2"))
    v2.MoGeModel = FakeMoGeModel
    pkg.model, model_pkg.v2 = model_pkg, v2
    for name, mod in (("moge", pkg), ("moge.model", model_pkg), ("moge.model.v2", v2)):
        monkeypatch.setitem(sys.modules, name, mod)
    return FakeMoGeModel


def _moge_checkpoint(path, drop=(), dim=4):
    config = {"encoder": {"dim": dim}, "neck": {}, "scale_head": {}}
    state = FakeMoGeModel(**config).state_dict()
    for k in drop:
        state.pop(k)
    torch.save({"model_config": config, "model": state}, path)
    return path


# ------------------------------------------------------------------------------- fake Depth Anything V2
_WIDTH = {"vits": 384, "vitb": 768}


class _FakeDINO(nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, _WIDTH[encoder], 14, 14)


class FakeDAv2(nn.Module):
    """Mimics depth_anything_v2.dpt.DepthAnythingV2 (relative): ``forward`` returns the *un-normalised red
    channel* of its input as the disparity [B, h, w], so the output reveals our normalisation."""

    inputs: list = []

    def __init__(self, encoder="vitl", features=256, out_channels=(256, 512, 1024, 1024), use_bn=False,
                 use_clstoken=False):
        super().__init__()
        self.encoder, self.features, self.out_channels = encoder, features, list(out_channels)
        self.pretrained = _FakeDINO(encoder)
        self.depth_head = nn.Conv2d(1, 1, 1)

    def forward(self, x):
        FakeDAv2.inputs.append(x.clone())
        return (x[:, 0] * 0.229 + 0.485).clamp_min(0.0)


class FakeDAv2Metric(FakeDAv2):
    """The metric_depth variant: takes ``max_depth``; forward returns metres = max_depth * red."""

    def __init__(self, encoder="vitl", features=256, out_channels=(256, 512, 1024, 1024), use_bn=False,
                 use_clstoken=False, max_depth=20.0):
        super().__init__(encoder, features, out_channels, use_bn, use_clstoken)
        self.max_depth = max_depth

    def forward(self, x):
        return self.max_depth * super().forward(x)


def _install_dav2(monkeypatch, cls):
    FakeDAv2.inputs = []
    pkg, dpt = types.ModuleType("depth_anything_v2"), types.ModuleType("depth_anything_v2.dpt")
    dpt.DepthAnythingV2 = cls
    pkg.dpt = dpt
    monkeypatch.setitem(sys.modules, "depth_anything_v2", pkg)
    monkeypatch.setitem(sys.modules, "depth_anything_v2.dpt", dpt)


@pytest.fixture
def fake_dav2(monkeypatch):
    _install_dav2(monkeypatch, FakeDAv2)


def _dav2_checkpoint(path, encoder="vits", drop=()):
    cfg = dm._DAV2_CONFIGS[_WIDTH[encoder]]
    state = FakeDAv2(encoder, cfg["features"], cfg["out_channels"]).state_dict()
    for k in drop:
        state.pop(k)
    torch.save(state, path)
    return path


# ------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kind", dm.DEPTH_KINDS)
def test_no_checkpoint_says_how_to_get_one_and_the_degraded_mode(kind):
    with pytest.raises(MissingCheckpointError) as e:
        load_depth_model(kind, None)
    msg = str(e.value)
    assert dm.DEPTH_CHECKPOINT_ENV in msg and dm.DEPTH_CHECKPOINT_FLAG in msg
    assert "--depth none" in msg
    assert "Hugging Face" in msg
    assert isinstance(e.value, ModelSetupError)


def test_env_var_is_read_and_a_missing_path_is_named(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "model.pt"
    monkeypatch.setenv(dm.DEPTH_CHECKPOINT_ENV, str(missing))
    with pytest.raises(CheckpointNotFoundError) as e:
        load_depth_model("moge2")
    assert str(missing) in str(e.value)
    assert isinstance(e.value, FileNotFoundError)


@pytest.mark.parametrize("kind", dm.DEPTH_KINDS)
def test_missing_path_argument(tmp_path, kind):
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        load_depth_model(kind, tmp_path / "missing.pth")


def test_moge_folder_without_model_pt(tmp_path, fake_moge):
    with pytest.raises(CheckpointNotFoundError, match="model.pt"):
        load_depth_model("moge2", tmp_path)


@pytest.mark.parametrize("kind, module, hint", [
    ("moge2", "moge", "pip install git+https://github.com/microsoft/MoGe.git"),
    ("depth_anything_v2", "depth_anything_v2", "github.com/DepthAnything/Depth-Anything-V2"),
])
def test_code_not_installed_names_the_package(tmp_path, monkeypatch, kind, module, hint):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    ckpt = tmp_path / "weights.pt"
    ckpt.write_bytes(b"not used")
    with pytest.raises(ModelCodeMissingError) as e:
        load_depth_model(kind, ckpt)
    assert hint in str(e.value) and isinstance(e.value, ImportError)


def test_garbage_file_is_a_corrupt_checkpoint(tmp_path, fake_moge, fake_dav2):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"\x00\x01 definitely not a zip or pickle" * 10)
    for kind in dm.DEPTH_KINDS:
        with pytest.raises(CorruptCheckpointError, match="not a readable"):
            load_depth_model(kind, bad)


def test_moge_missing_keys_are_named(tmp_path, fake_moge):
    ckpt = _moge_checkpoint(tmp_path / "model.pt", drop=("encoder.weight", "neck.bias"))
    with pytest.raises(CorruptCheckpointError) as e:
        load_depth_model("moge2", ckpt)
    assert "'encoder.weight'" in str(e.value) and "'neck.bias'" in str(e.value)


def test_moge_shape_mismatch_is_corrupt(tmp_path, fake_moge):
    ckpt = tmp_path / "model.pt"
    config = {"encoder": {"dim": 4}, "neck": {}, "scale_head": {}}
    state = FakeMoGeModel(**{**config, "encoder": {"dim": 7}}).state_dict()
    torch.save({"model_config": config, "model": state}, ckpt)
    with pytest.raises(CorruptCheckpointError, match="does not fit"):
        load_depth_model("moge2", ckpt)


def test_wrong_model_checkpoints_are_recognised(tmp_path, fake_moge, fake_dav2):
    dav2 = _dav2_checkpoint(tmp_path / "depth_anything_v2_vits.pth")
    with pytest.raises(CorruptCheckpointError, match="use kind 'depth_anything_v2'"):
        load_depth_model("moge2", dav2)
    moge = _moge_checkpoint(tmp_path / "model.pt")
    with pytest.raises(CorruptCheckpointError, match="use kind 'moge2'"):
        load_depth_model("depth_anything_v2", moge)


def test_dav2_missing_and_unexpected_keys_are_named(tmp_path, fake_dav2):
    ckpt = tmp_path / "depth_anything_v2_vits.pth"
    state = FakeDAv2("vits", 64, [48, 96, 192, 384]).state_dict()
    state.pop("depth_head.weight")
    state["head.extra"] = torch.zeros(1)
    torch.save(state, ckpt)
    with pytest.raises(CorruptCheckpointError) as e:
        load_depth_model("depth_anything_v2", ckpt)
    assert "'depth_head.weight'" in str(e.value) and "'head.extra'" in str(e.value)


def test_dav2_metric_checkpoint_with_relative_code(tmp_path, fake_dav2):
    ckpt = _dav2_checkpoint(tmp_path / "depth_anything_v2_metric_hypersim_vits.pth")
    with pytest.raises(ModelCodeMissingError, match="metric_depth"):
        load_depth_model("depth_anything_v2", ckpt)


def test_unknown_kind():
    with pytest.raises(ValueError, match="moge2"):
        load_depth_model("midas", "x")


# ----------------------------------------------------------------------------------------- prediction
def _test_image(H=30, W=40):
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 0] = np.linspace(0, 255, W).round().astype(np.uint8)[None]  # red ramp left -> right
    img[:5, :, 1] = 255  # top rows "sky" for the fake MoGe
    img[..., 2] = 77
    return img


def test_moge_prediction_layout_fov_and_invalid_pixels(tmp_path, fake_moge):
    model = load_depth_model("moge2", _moge_checkpoint(tmp_path / "model.pt"))
    assert model.metric and model.native_output == "depth" and model.kind == "moge2"
    img = _test_image()
    K = np.array([[50.0, 0, 20], [0, 50.0, 15], [0, 0, 1]])
    depth = model.predict(img, K)
    call = fake_moge.calls[-1]
    x = call["image"]
    assert x.shape == (3, 30, 40) and x.dtype == torch.float32
    np.testing.assert_allclose(x.permute(1, 2, 0).numpy(), img / 255.0, atol=1e-6)  # RGB, [0, 1], CHW
    assert call["fov_x"] == pytest.approx(np.degrees(2 * np.arctan(20 / 50.0)))
    assert call["use_fp16"] is False  # CPU
    assert depth.dtype == np.float32 and depth.shape == (30, 40)
    assert np.isnan(depth[:5]).all()
    np.testing.assert_allclose(depth[5:], 1 + 3 * img[5:, :, 0].astype(np.float64) / 255.0, rtol=1e-6)
    model.predict(img)  # without K: MoGe estimates the FoV itself
    assert fake_moge.calls[-1]["fov_x"] is None


def test_moge_folder_checkpoint(tmp_path, fake_moge):
    _moge_checkpoint(tmp_path / "model.pt")
    assert load_depth_model("moge2", tmp_path).metric


def test_predict_rejects_non_uint8_rgb(tmp_path, fake_moge):
    model = load_depth_model("moge2", _moge_checkpoint(tmp_path / "model.pt"))
    with pytest.raises(ValueError, match="uint8"):
        model.predict(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        model.predict(np.zeros((8, 8), np.uint8))


def test_dav2_input_size_matches_upstream_rule():
    assert dav2_input_size(480, 640) == (518, 686)
    assert dav2_input_size(1080, 1920) == (518, 924)
    assert dav2_input_size(640, 480) == (686, 518)
    for H, W in [(100, 100), (37, 301), (720, 1280)]:
        h, w = dav2_input_size(H, W)
        assert h % 14 == 0 and w % 14 == 0 and min(h, w) >= 518
        assert abs(h / w - H / W) < 0.03


def test_dav2_relative_preprocessing_and_disparity_to_depth(tmp_path, fake_dav2):
    model = load_depth_model("depth_anything_v2", _dav2_checkpoint(tmp_path / "depth_anything_v2_vits.pth"))
    assert not model.metric and model.native_output == "disparity" and model.kind == "depth_anything_v2"
    H, W = 36, 48
    img = np.full((H, W, 3), 90, np.uint8)
    img[:, : W // 2, 0] = 50   # left half: disparity ~ 50/255
    img[:, W // 2:, 0] = 200   # right half: 4x the disparity -> 1/4 of the depth
    img[:4, :, 0] = 0          # top: zero disparity -> "infinitely far" -> NaN
    depth = model.predict(img)
    x = FakeDAv2.inputs[-1]
    assert x.shape[-2:] == dav2_input_size(H, W) == (518, 686)
    # ImageNet normalisation of the (constant) green channel, exact away from edges.
    assert x[0, 1, 100:400, 100:500].mean().item() == pytest.approx((90 / 255 - 0.456) / 0.224, abs=1e-4)
    assert depth.shape == (H, W) and depth.dtype == np.float32
    assert np.isnan(depth[:3]).all()
    left, right = depth[10:, 2: W // 2 - 3], depth[10:, W // 2 + 3: -2]
    assert np.nanmedian(left) / np.nanmedian(right) == pytest.approx(4.0, rel=0.02)
    native = model.predict_native(img)
    assert native[20, 5] == pytest.approx(50 / 255, rel=0.02)


def test_dav2_metric_checkpoint_returns_metres(tmp_path, monkeypatch):
    _install_dav2(monkeypatch, FakeDAv2Metric)
    model = load_depth_model("depth_anything_v2", _dav2_checkpoint(tmp_path / "depth_anything_v2_metric_vkitti_vits.pth"))
    assert model.metric and model.native_output == "depth" and model.model.max_depth == 80.0
    img = np.full((20, 30, 3), 128, np.uint8)
    depth = model.predict(img)
    np.testing.assert_allclose(depth, 80.0 * 128 / 255, rtol=1e-3)


def test_dav2_encoder_is_read_from_the_checkpoint(tmp_path, fake_dav2):
    model = load_depth_model("depth_anything_v2", _dav2_checkpoint(tmp_path / "renamed.pth", encoder="vitb"))
    assert model.model.encoder == "vitb" and model.model.features == 128


def test_disparity_to_depth_is_exact_for_zero_shift():
    z = np.random.default_rng(0).uniform(1.0, 9.0, (10, 12))
    depth = disparity_to_depth(3.0 / z)
    ratio = depth / z
    np.testing.assert_allclose(ratio, ratio.mean(), rtol=1e-5)  # depth up to one global scale
    assert np.nanmedian(depth) == pytest.approx(1.0, rel=1e-2)
