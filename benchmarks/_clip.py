"""The synthetic clip a benchmark measures on: ``--clip DIR``, else the default clip from the cache
(rendered first with ``--generate``; Blender needed)."""
from __future__ import annotations

import sys
from pathlib import Path


def resolve_clip(clip: str | None, generate: bool) -> Path | None:
    """The clip directory, or None (with a message on stderr) when the default clip is not cached."""
    from showmaker.synth import default_spec, generate_clip
    from showmaker.synth.clip import is_complete_clip
    from showmaker.synth.generate import cache_root, clip_key, procedural_body

    if clip:
        return Path(clip)
    spec = default_spec()
    path = cache_root() / clip_key(spec, procedural_body())
    if is_complete_clip(path):
        return path
    if not generate:
        print(f"the default synthetic clip is not cached ({path}); run with --generate or `showmaker synth`",
              file=sys.stderr)
        return None
    return generate_clip(spec)
