"""H.264 mp4 writing with PyAV."""
from __future__ import annotations

import logging
import os
import secrets
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import av
import numpy as np

from ..atomic import fsync_dir

__all__ = ["write_mp4", "count_video_frames"]

log = logging.getLogger(__name__)
FALLBACK_CODEC = "mpeg4"


def write_mp4(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float, width: int, height: int,
              crf: int = 18) -> str:
    """Encode frames ([height, width, 3] uint8 RGB, even sizes) as an mp4 at ``fps``, atomically; returns the
    codec used.

    H.264 (libx264, yuv420p) when this PyAV build has it, otherwise MPEG-4 part 2 with a logged warning.
    """
    path = Path(path)
    codec = "libx264" if "libx264" in av.codecs_available else FALLBACK_CODEC
    if codec != "libx264":
        log.warning("PyAV has no libx264 encoder; writing %s with the %s codec instead of H.264", path.name, codec)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp.mp4")
    try:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
            stream.pix_fmt, stream.width, stream.height = "yuv420p", width, height
            if codec == "libx264":
                stream.options = {"crf": str(crf), "preset": "medium"}
            else:
                stream.bit_rate = 4_000_000
            for rgb in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return codec


def count_video_frames(path: str | os.PathLike) -> int:
    """Number of frames in a video, by decoding it (container metadata can be missing or wrong)."""
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))
