"""The synthetic clip generator: a scene spec rendered with Blender, with ground truth for every stage.

Public API::

    spec = load_spec("scene.json")            # or default_spec(); SpecError names a bad field
    path = generate_clip(spec)                 # cached under $SHOWMAKER_CACHE/synth/<key>/
    clip = load_clip(path)                     # SynthClip: frames, K, viewmats, depth, masks, smpl, ...
    clip.background_paths, clip.background_K, clip.background_viewmats   # images of the empty set (may be none)

``load_clip`` and the spec need no Blender; ``generate_clip`` needs ``bpy`` (the ``synth`` extra).
Formats and conventions: ``docs/synthetic_clip.md``.
"""
from .clip import SynthClip, load_clip
from .generate import cache_root, generate_clip
from .spec import SceneSpec, SpecError, default_spec, load_spec, parse_spec

__all__ = ["SceneSpec", "SpecError", "SynthClip", "cache_root", "default_spec", "generate_clip", "load_clip",
           "load_spec", "parse_spec"]
