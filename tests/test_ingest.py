"""Video validation and decoding on real tiny clips written with PyAV (64x48, 10 frames)."""

from __future__ import annotations

import json
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from showmaker.ingest import IngestError, VideoLimits, decode_frames, probe_video

CODEC = "libx264" if "libx264" in av.codecs_available else "mpeg4"
W, H, N = 64, 48, 10


def frame_image(i: int, rng=None) -> np.ndarray:
    """Frame i: red level 20*i (checked after decoding) and a green bar; noise instead with ``rng``."""
    if rng is not None:
        return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 0] = 20 * i
    img[:, 4 * i:4 * i + 4, 1] = 255
    return img


def make_video(path, pts_ms=None, codec=CODEC, container_format=None, noise=False):
    """Write a tiny clip at 10 fps, or with the given presentation times in milliseconds (VFR)."""
    rng = np.random.default_rng(0) if noise else None
    with av.open(str(path), "w", format=container_format) as out:
        stream = out.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        if pts_ms is not None:
            stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        for i in range(N):
            frame = av.VideoFrame.from_ndarray(frame_image(i, rng), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def test_constant_rate_clip_probes_and_decodes(tmp_path):
    clip = make_video(tmp_path / "clip.mp4")
    info = probe_video(clip)
    assert (info.width, info.height, info.n_frames, info.fps, info.is_vfr) == (W, H, N, 10.0, False)
    assert info.duration_s == pytest.approx(1.0) and info.codec in ("h264", "mpeg4")
    result = decode_frames(clip, tmp_path / "frames")
    expected_files = [f"{i:06d}.png" for i in range(N)]
    assert result.files == expected_files
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == expected_files + ["frames.json"]
    meta = json.loads((tmp_path / "frames" / "frames.json").read_text())
    assert meta["complete"] is True and meta["fps"] == 10.0 and (meta["width"], meta["height"]) == (W, H)
    assert [f["time"] for f in meta["frames"]] == pytest.approx([i / 10 for i in range(N)])
    for i in (0, 5, 9):  # frames come out in order: the red level encodes the frame number
        red = np.asarray(Image.open(tmp_path / "frames" / f"{i:06d}.png"))[..., 0].mean()
        assert abs(red - 20 * i) < 8


def test_variable_frame_rate_keeps_real_timestamps(tmp_path):
    pts_ms = [0, 40, 120, 160, 300, 340, 400, 520, 560, 600]
    clip = make_video(tmp_path / "vfr.mp4", pts_ms=pts_ms)
    info = probe_video(clip)
    assert info.is_vfr and info.n_frames == N
    assert info.timestamps == pytest.approx([t / 1000 for t in pts_ms])
    result = decode_frames(clip, tmp_path / "frames")
    assert result.times == pytest.approx([t / 1000 for t in pts_ms])
    meta = json.loads((tmp_path / "frames" / "frames.json").read_text())
    assert meta["is_vfr"] is True and [f["time"] for f in meta["frames"]] == pytest.approx(result.times)


def test_stride_max_frames_resize_and_jpeg(tmp_path):
    clip = make_video(tmp_path / "clip.mp4")
    result = decode_frames(clip, tmp_path / "a", stride=3)
    assert result.indices == [0, 3, 6, 9] and result.times == pytest.approx([0.0, 0.3, 0.6, 0.9])
    result = decode_frames(clip, tmp_path / "b", max_frames=2, max_side=32, image_format="jpg")
    assert result.files == ["000000.jpg", "000001.jpg"] and (result.width, result.height) == (32, 24)
    assert Image.open(tmp_path / "b" / "000001.jpg").size == (32, 24)


def test_unknown_frame_count_is_estimated_or_counted(tmp_path):
    clip = make_video(tmp_path / "clip.mkv", container_format="matroska")
    with av.open(str(clip)) as container:
        assert container.streams.video[0].frames == 0  # Matroska does not store it
    assert probe_video(clip, scan_packets=False).n_frames == N  # duration * rate
    assert probe_video(clip).n_frames == N  # packets counted


@pytest.mark.skipif(CODEC != "libx264", reason="needs libx264 for a raw .h264 stream")
def test_raw_stream_without_packet_timestamps(tmp_path):
    raw = make_video(tmp_path / "clip.h264", container_format="h264")
    info = probe_video(raw)
    assert info.n_frames == N and info.timestamps is None and not info.is_vfr
    times = decode_frames(raw, tmp_path / "frames").times
    assert len(times) == N and np.allclose(np.diff(times), 1 / info.fps)


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty file"),
     (np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes(), "unreadable or corrupt")],
)
def test_empty_and_random_files(tmp_path, content, message):
    path = tmp_path / "clip.mp4"
    path.write_bytes(content)
    with pytest.raises(IngestError, match=f"clip.mp4: {message}"):
        probe_video(path)
    with pytest.raises(IngestError, match="file not found"):
        probe_video(tmp_path / "missing.mp4")


def test_truncated_mp4_is_an_error_truncated_mkv_decodes_what_is_there(tmp_path):
    # MP4 keeps its index (moov) at the end: cut in half, it cannot be opened at all.
    data = make_video(tmp_path / "full.mp4").read_bytes()
    (tmp_path / "half.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(IngestError, match="half.mp4: unreadable or corrupt.*truncated"):
        probe_video(tmp_path / "half.mp4")
    # Matroska streams: the first frames survive, and the shortfall is reported as truncation.
    data = make_video(tmp_path / "full.mkv", container_format="matroska", noise=True).read_bytes()
    (tmp_path / "half.mkv").write_bytes(data[: len(data) // 2])
    info = probe_video(tmp_path / "half.mkv")
    assert 0 < info.n_frames < N and "looks truncated" in info.warnings[0]
    result = decode_frames(tmp_path / "half.mkv", tmp_path / "frames")
    assert result.times == pytest.approx([i / 10 for i in range(len(result.files))]) and len(result.files) > 0


def test_limits_are_checked_before_decoding(tmp_path):
    clip = make_video(tmp_path / "clip.mp4")
    with pytest.raises(IngestError, match="resolution 64x48 is above the limit 32x32.*downscale"):
        probe_video(clip, VideoLimits(max_width=32, max_height=32))
    with pytest.raises(IngestError, match="resolution 64x48 is below the minimum 100x100"):
        probe_video(clip, VideoLimits(min_width=100, min_height=100))
    with pytest.raises(IngestError, match="over the 0.005-minute limit"):
        probe_video(clip, VideoLimits(max_duration_s=0.3))
    with pytest.raises(IngestError, match="over the 5-frame limit"):
        probe_video(clip, VideoLimits(max_frames=5))
    with pytest.raises(IngestError, match="over the 5-frame limit"):  # no frame count: duration x rate
        probe_video(make_video(tmp_path / "c.mkv", container_format="matroska"), VideoLimits(max_frames=5))
    with pytest.raises(IngestError, match="above the limit"):
        decode_frames(clip, tmp_path / "frames", limits=VideoLimits(max_width=32))
    assert not (tmp_path / "frames").exists()


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=8000)
        for i in range(3):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8000, i * 1024
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    with pytest.raises(IngestError, match="sound.m4a: no video stream found — is this a video file"):
        probe_video(path)


def test_corrupt_frame_mid_file_names_the_frame_and_keeps_earlier_ones(tmp_path):
    clip = make_video(tmp_path / "clip.mkv", codec="mpeg4", container_format="matroska")
    with av.open(str(clip)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    data = bytearray(clip.read_bytes())
    pos, size = packets[5]
    data[pos + 4:pos + size] = b"\xff" * (size - 4)  # garbage inside frame 5's packet
    clip.write_bytes(bytes(data))
    with pytest.raises(IngestError, match=r"clip.mkv: frame 5 \(t=0.500s\) could not be decoded.*max_frames=5"):
        decode_frames(clip, tmp_path / "frames")
    meta = json.loads((tmp_path / "frames" / "frames.json").read_text())
    assert meta["complete"] is False and "frame 5" in meta["error"]
    assert [f["file"] for f in meta["frames"]] == [f"{i:06d}.png" for i in range(5)]
    assert all((tmp_path / "frames" / f"{i:06d}.png").exists() for i in range(5))


def test_image_folder_input(tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    for i in (1, 2, 10):  # natural order: img2 before img10
        Image.fromarray(frame_image(i)).save(folder / f"img{i}.png")
    (folder / "notes.txt").write_text("ignored")
    info = probe_video(folder, image_fps=5)
    assert (info.n_frames, info.width, info.height, info.codec) == (3, W, H, "images")
    result = decode_frames(folder, tmp_path / "frames", image_fps=5)
    assert result.times == pytest.approx([0.0, 0.2, 0.4])
    red = [np.asarray(Image.open(tmp_path / "frames" / f))[..., 0].mean() for f in result.files]
    assert red == [20, 40, 200]
    Image.new("RGB", (32, 32)).save(folder / "img11.png")
    with pytest.raises(IngestError, match="img11.png: 32x32 but img1.png is 64x48.*same size"):
        probe_video(folder)
    (folder / "img11.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(IngestError, match="img11.png: unreadable or corrupt image"):
        probe_video(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(IngestError, match="no images found"):
        probe_video(empty)
