"""Video (or image-folder) ingest: validate first, then decode to numbered frames with real timestamps.

:func:`probe_video` checks a clip cheaply before anything is decoded: the file exists and is not empty, the
container opens, it has a video stream, the resolution, duration and frame count are within
:class:`VideoLimits`. It demuxes packets (no decoding) to count frames exactly and read their presentation
timestamps, which also reveals variable frame rate and truncated files.

:func:`decode_frames` writes ``000000.png`` (or ``.jpg``) ... plus ``frames.json``::

    {"format_version": 1, "complete": true, "source": "clip.mp4", "width": 64, "height": 48,
     "source_width": 64, "source_height": 48, "fps": 10.0, "is_vfr": false, "stride": 1, "warnings": [],
     "frames": [{"file": "000000.png", "index": 0, "time": 0.0}, ...]}

``index`` is the frame's position in the source, ``time`` its presentation time in seconds (pts * time_base,
so variable frame rate clips keep their real timing; never index / fps).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import av

from .atomic import atomic_write_json

__all__ = [
    "IMAGE_EXTENSIONS",
    "FRAMES_JSON",
    "DecodedFrames",
    "IngestError",
    "VideoInfo",
    "VideoLimits",
    "decode_frames",
    "probe_video",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
FRAMES_JSON = "frames.json"
_REEXPORT = "re-export it as H.264 mp4"


class IngestError(ValueError):
    """An input clip or image folder cannot be used; the message names the file, the problem and the fix."""


@dataclass(frozen=True)
class VideoLimits:
    """Caps checked before decoding, so a huge or hostile file is refused early."""

    max_width: int = 8192
    max_height: int = 8192
    min_width: int = 16
    min_height: int = 16
    max_duration_s: float = 20 * 60
    max_frames: int = 100_000


@dataclass
class VideoInfo:
    """What :func:`probe_video` found. ``timestamps`` (seconds, presentation order) is set when packets
    were scanned or the input is an image folder; ``warnings`` notes recoverable problems (e.g. truncation)."""

    path: Path
    width: int
    height: int
    n_frames: int
    fps: float
    duration_s: float
    codec: str
    is_vfr: bool
    timestamps: list[float] | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class DecodedFrames:
    """What :func:`decode_frames` wrote (the same content as ``frames.json``)."""

    out_dir: Path
    files: list[str]
    indices: list[int]
    times: list[float]
    width: int
    height: int
    info: VideoInfo


# ------------------------------------------------------------------------------------------------- probe
def probe_video(
    path: str | Path,
    limits: VideoLimits = VideoLimits(),
    *,
    scan_packets: bool = True,
    image_fps: float = 24.0,
) -> VideoInfo:
    """Validate a clip (or a folder of images) without decoding it; raise :class:`IngestError` if unusable.

    With ``scan_packets`` (default) every packet is demuxed, not decoded, for an exact frame count and
    timestamps; without it the header is trusted unless it does not state the frame count. A folder of
    images is read as frames at ``image_fps``.
    """
    path = Path(path)
    if not path.exists():
        raise IngestError(f"{path}: file not found — check the path")
    if path.is_dir():
        return _probe_image_dir(path, limits, image_fps)
    if path.stat().st_size == 0:
        raise IngestError(f"{path}: empty file (0 bytes) — the export or download did not finish; redo it")
    try:
        container = av.open(str(path.absolute()))
    except av.FFmpegError as exc:
        raise IngestError(
            f"{path}: unreadable or corrupt video ({exc.strerror or exc}) — is it a complete video file? "
            f"A truncated download or a file cut short cannot be opened; re-download it or {_REEXPORT}"
        ) from exc
    with container:
        if not container.streams.video:
            raise IngestError(f"{path}: no video stream found — is this a video file? Re-export it as H.264 mp4")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        _check_resolution(path, width, height, limits)
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        duration_s = _header_duration(container, stream)
        if duration_s is not None and duration_s > limits.max_duration_s:
            raise _too_long(path, duration_s, limits)
        header_frames = stream.frames or (round(duration_s * fps) if duration_s and fps else 0)
        if header_frames > limits.max_frames:
            raise _too_many(path, header_frames, limits)
        timestamps, warnings = None, []
        if scan_packets or not header_frames:
            n_frames, timestamps = _scan_packets(path, container, stream, limits)
            if n_frames < header_frames - max(2, 0.02 * header_frames):
                warnings.append(
                    f"{path}: only {n_frames} of the {header_frames} frames the header announces are present "
                    f"— the file looks truncated (an unfinished download?); using the frames that are there"
                )
        else:
            n_frames = header_frames
        codec, time_base = stream.codec_context.name, stream.time_base
    if n_frames == 0:
        raise IngestError(f"{path}: the video stream has no frames — {_REEXPORT}")
    is_vfr = bool(timestamps) and _is_vfr(timestamps, time_base)
    if timestamps and timestamps[-1] > timestamps[0] and (not fps or is_vfr):
        fps = (len(timestamps) - 1) / (timestamps[-1] - timestamps[0])
    if not fps:
        raise IngestError(f"{path}: the frame rate cannot be determined — {_REEXPORT} with a fixed frame rate")
    if timestamps:  # what is really there; headers can be wrong or describe a longer (truncated) file
        duration_s = timestamps[-1] - timestamps[0] + 1 / fps
    elif duration_s is None:
        duration_s = n_frames / fps
    if duration_s > limits.max_duration_s:
        raise _too_long(path, duration_s, limits)
    return VideoInfo(path, width, height, n_frames, fps, duration_s, codec, is_vfr, timestamps, warnings)


def _check_resolution(path: Path, width: int, height: int, limits: VideoLimits) -> None:
    if not width or not height:
        raise IngestError(f"{path}: the video stream has no frame size — the file is corrupt; {_REEXPORT}")
    if width > limits.max_width or height > limits.max_height:
        raise IngestError(
            f"{path}: resolution {width}x{height} is above the limit {limits.max_width}x{limits.max_height} — "
            f"downscale it (e.g. to 1920 px wide) or raise VideoLimits.max_width/max_height"
        )
    if width < limits.min_width or height < limits.min_height:
        raise IngestError(
            f"{path}: resolution {width}x{height} is below the minimum {limits.min_width}x{limits.min_height} — "
            f"use a larger source"
        )


def _too_long(path: Path, duration_s: float, limits: VideoLimits) -> IngestError:
    return IngestError(
        f"{path}: {duration_s / 60:.3g} minutes long, over the {limits.max_duration_s / 60:g}-minute limit — "
        f"cut the clip to the shots you need or raise VideoLimits.max_duration_s"
    )


def _too_many(path: Path, n_frames: int, limits: VideoLimits) -> IngestError:
    return IngestError(
        f"{path}: {n_frames} frames or more, over the {limits.max_frames}-frame limit — cut the clip to the "
        f"shots you need or raise VideoLimits.max_frames"
    )


def _header_duration(container, stream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def _scan_packets(path: Path, container, stream, limits: VideoLimits) -> tuple[int, list[float] | None]:
    """Count the video packets (one per frame) by demuxing without decoding, stopping past the frame cap.

    Returns the count and the sorted presentation times in seconds, or ``None`` for the times if some
    packets carry none (raw elementary streams such as ``.h264``).
    """
    count, pts = 0, []
    try:
        for packet in container.demux(stream):
            if not packet.size:  # the end-of-stream flush packet
                continue
            count += 1
            if packet.pts is not None:
                pts.append(packet.pts)
            if count > limits.max_frames:
                raise _too_many(path, count, limits)
    except av.FFmpegError as exc:
        if not count:
            raise IngestError(f"{path}: unreadable or corrupt video ({exc}) — {_REEXPORT}") from exc
        # Damage past the first packets: keep what was read; decode_frames reports where it breaks.
    if len(pts) < count:
        return count, None
    return count, [float(p * stream.time_base) for p in sorted(pts)]


def _is_vfr(timestamps: list[float], time_base) -> bool:
    """True if frame intervals vary by more than timestamp rounding (2 ticks) and 2% of the median."""
    if len(timestamps) < 3:
        return False
    deltas = sorted(b - a for a, b in zip(timestamps, timestamps[1:]))
    tolerance = max(2 * float(time_base or 0), 0.02 * deltas[len(deltas) // 2])
    return deltas[-1] - deltas[0] > tolerance


# ------------------------------------------------------------------------------------------------- images
def _natural_key(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _list_images(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=lambda p: _natural_key(p.name))


def _bad_image(path: Path, exc: Exception) -> IngestError:
    return IngestError(f"{path}: unreadable or corrupt image ({exc}) — re-export it or remove it from the folder")


def _probe_image_dir(folder: Path, limits: VideoLimits, fps: float) -> VideoInfo:
    from PIL import Image

    files = _list_images(folder)
    if not files:
        raise IngestError(
            f"{folder}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)}) — point to the folder "
            f"that holds the frames, or to a video file"
        )
    if len(files) > limits.max_frames:
        raise _too_many(folder, len(files), limits)
    size = None
    for p in files:
        try:
            with Image.open(p) as im:  # reads the header only
                this = im.size
        except Exception as exc:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ...
            raise _bad_image(p, exc) from exc
        if size is None:
            size = this
            _check_resolution(p, *size, limits)
        elif this != size:
            raise IngestError(
                f"{p}: {this[0]}x{this[1]} but {files[0].name} is {size[0]}x{size[1]} — all images in a frame "
                f"folder must have the same size; resize or remove the odd ones"
            )
    times = [i / fps for i in range(len(files))]
    info = VideoInfo(folder, size[0], size[1], len(files), fps, len(files) / fps, "images", False, times)
    if info.duration_s > limits.max_duration_s:
        raise _too_long(folder, info.duration_s, limits)
    return info


# ------------------------------------------------------------------------------------------------- decode
def decode_frames(
    path: str | Path,
    out_dir: str | Path,
    *,
    stride: int = 1,
    max_frames: int | None = None,
    max_side: int | None = None,
    image_format: str = "png",
    jpeg_quality: int = 95,
    limits: VideoLimits = VideoLimits(),
    image_fps: float = 24.0,
    progress: Callable[[float, str], None] | None = None,
) -> DecodedFrames:
    """Probe ``path`` (video or image folder), then write every ``stride``-th frame into ``out_dir``.

    ``max_frames`` caps the frames written, ``max_side`` downscales so the longer side is at most that many
    pixels, ``image_format`` is ``"png"`` or ``"jpg"``. ``progress(fraction, message)`` is called after each
    written frame and may raise (e.g. ``Cancelled``) to stop. If a frame cannot be decoded, the frames before
    it stay written, ``frames.json`` lists them with ``"complete": false``, and :class:`IngestError` names the
    frame index and time.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be >= 1 or None, got {max_side}")
    ext = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg"}.get(image_format.lower())
    if ext is None:
        raise ValueError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
    info = probe_video(path, limits, image_fps=image_fps)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    width, height = _fit(info.width, info.height, max_side)
    wanted = len(range(0, info.n_frames, stride))
    if max_frames is not None:
        wanted = min(wanted, max_frames)
    writer = _FrameWriter(out_dir, ext, jpeg_quality, (width, height), info, stride, wanted, progress)
    if info.codec == "images":
        _decode_image_dir(info, writer, stride)
    else:
        _decode_video(info, writer, stride)
    return writer.finish()


def _fit(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


class _FrameWriter:
    """Numbers, resizes and saves frames, and writes ``frames.json``."""

    def __init__(self, out_dir, ext, jpeg_quality, size, info, stride, wanted, progress):
        self.out_dir, self.ext, self.jpeg_quality, self.size = out_dir, ext, jpeg_quality, size
        self.info, self.stride, self.wanted, self.progress = info, stride, wanted, progress
        self.files: list[str] = []
        self.indices: list[int] = []
        self.times: list[float] = []

    @property
    def full(self) -> bool:
        return len(self.files) >= self.wanted

    def add(self, image, index: int, time: float) -> None:
        """Save a PIL image as the next output frame."""
        from PIL import Image

        if image.size != self.size:
            image = image.resize(self.size, Image.Resampling.LANCZOS)
        name = f"{len(self.files):06d}{self.ext}"
        if self.ext == ".png":
            image.save(self.out_dir / name, format="PNG", compress_level=1)
        else:
            image.save(self.out_dir / name, format="JPEG", quality=self.jpeg_quality)
        self.files.append(name)
        self.indices.append(index)
        self.times.append(time)
        if self.progress is not None:
            self.progress(len(self.files) / self.wanted, f"frame {len(self.files)}/{self.wanted}")

    def write_json(self, complete: bool, error: str | None = None) -> None:
        info = self.info
        atomic_write_json(self.out_dir / FRAMES_JSON, {
            "format_version": 1,
            "complete": complete,
            "error": error,
            "source": info.path.name,
            "width": self.size[0], "height": self.size[1],
            "source_width": info.width, "source_height": info.height,
            "fps": info.fps, "is_vfr": info.is_vfr, "stride": self.stride,
            "warnings": info.warnings,
            "frames": [{"file": f, "index": i, "time": t} for f, i, t in zip(self.files, self.indices, self.times)],
        })

    def fail(self, message: str) -> IngestError:
        """Record the frames written so far as incomplete and return the error to raise."""
        self.write_json(False, message)
        return IngestError(message)

    def finish(self) -> DecodedFrames:
        if not self.files:
            raise self.fail(f"{self.info.path}: no frame could be decoded — the file is damaged; {_REEXPORT}")
        self.write_json(True)
        return DecodedFrames(self.out_dir, self.files, self.indices, self.times, *self.size, self.info)


def _decode_video(info: VideoInfo, writer: _FrameWriter, stride: int) -> None:
    path = info.path
    index = 0  # source frame index, in presentation order
    last_time = -1.0 / info.fps
    with av.open(str(path.absolute())) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.FFmpegError as exc:
                # With frame threading the error surfaces a few packets late; the frame that failed is the
                # first one not returned, whose time the probe's packet scan knows.
                times = info.timestamps or []
                t = times[index] if index < len(times) else last_time + 1 / info.fps
                raise writer.fail(
                    f"{path}: frame {index} (t={t:.3f}s) could not be decoded ({exc.strerror or exc}) — the file "
                    f"is damaged there. The {len(writer.files)} frames before it are in {writer.out_dir}; "
                    f"re-export the clip, or pass max_frames={len(writer.files)} to use only those"
                ) from exc
            for frame in frames:
                time = frame.time if frame.time is not None else last_time + 1 / info.fps
                last_time = time
                if index % stride == 0:
                    writer.add(frame.to_image(), index, time)
                    if writer.full:
                        return
                index += 1


def _decode_image_dir(info: VideoInfo, writer: _FrameWriter, stride: int) -> None:
    from PIL import Image

    for index, p in enumerate(_list_images(info.path)):
        if index % stride:
            continue
        try:
            with Image.open(p) as im:
                image = im.convert("RGB")
        except Exception as exc:  # PIL raises OSError, SyntaxError, ... for damaged files
            raise writer.fail(str(_bad_image(p, exc))) from exc
        writer.add(image, index, info.timestamps[index])
        if writer.full:
            return

