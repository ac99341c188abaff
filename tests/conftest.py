"""Shared fixtures: the tiny synthetic clip (rendered once per session with real Blender)."""
import pytest
import torch

from showmaker.synth import default_spec, generate_clip, load_clip, parse_spec
from showmaker.synth.generate import procedural_body


def tiny_spec_dict():
    """8 frames at 96x72 over 3 shots (wide, close, wide); bob leaves the stage after frame 4 and is out
    of the close shot's frame while on stage. Two background images (not the default's 12: they are here for
    the reader and ground-truth tests, and cost about 0.2 s each)."""
    d = default_spec().with_frames(8).with_size(96, 72).to_dict()
    d["render"]["samples"] = 2
    d["background"]["count"] = 2
    d["actors"][1]["on_stage"] = [0, 4]
    d["actors"][1]["motion"] = [{"type": "gesture", "frames": 8}]
    return d


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Small tensors on a 2-core machine: one intra-op thread is 10-40x faster than two whenever another
    process (Blender, a subprocess test) competes for the cores, and no slower otherwise."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def model():
    return procedural_body()


@pytest.fixture(scope="session")
def tiny(tmp_path_factory, model):
    """(spec, path, SynthClip) of the tiny clip."""
    pytest.importorskip("bpy")  # rendering needs Blender as a module (the 'synth' extra)
    spec = parse_spec(tiny_spec_dict())
    path = generate_clip(spec, tmp_path_factory.mktemp("synth") / "tiny", threads=2, model=model)
    return spec, path, load_clip(path)


@pytest.fixture(scope="session")
def default_clip():
    """The default synthetic clip (SynthClip), rendered into the cache on first use (about 2 minutes on 2
    cores; cached across runs in $SHOWMAKER_CACHE, default ~/.cache/showmaker)."""
    pytest.importorskip("bpy")
    return load_clip(generate_clip(default_spec()))
