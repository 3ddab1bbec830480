"""decord vs PyAV: same frames, near-same pixels; a generated variable-frame-rate file; error lines.

The VFR file holds 48 frames at 30 fps in its first 1.6 s, then one frame every 0.5 s up to 9.6 s
(10.1 s in all); frame k is painted grey level 20 + round(200 k / 64) so a decoded frame tells
which frame it is.
"""
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from prvr.video.decoding import (VideoDecodeError, decode_video, plan_frames, resolve_backend, sample_indices,
                                video_info)
from prvr.video.frame_sampling import presentation_duration

VIDEOS = Path(__file__).parent / "data" / "videos"
MP4 = VIDEOS / "v_GGSY1Qvo990.mp4"  # 355 frames at 19.62 fps (time base 1/981)
MKV = VIDEOS / "flipping_a_pancake.mkv"  # 310 frames at 30 fps, timestamps in whole ms
MOV = VIDEOS / "decord_video_0.mov"  # 3 frames at 30 fps
CORRUPT = VIDEOS / "decord_corrupted.mp4"
HAS_DECORD = resolve_backend("auto") == "decord"  # importable and loads
BACKENDS = ["pyav"] + (["decord"] if HAS_DECORD else [])
needs_decord = pytest.mark.skipif(not HAS_DECORD, reason="decord has no wheel for this platform")

VFR_STARTS_MS = [round(k * 1000 / 30) for k in range(48)] + [1600 + 500 * k for k in range(17)]
N_VFR = len(VFR_STARTS_MS)  # 65
# Mean absolute difference (grey levels) allowed between decord's and PyAV's resized frames;
# measured 0.08 (mov), 0.17 (mp4), 0.38 (mkv) at 224 px; native size: identical.
MAX_MEAN_PIXEL_DIFF = 1.0


def _level(k: int) -> int:
    return 20 + round(k * 200 / (N_VFR - 1))


def write_vfr_video(path, starts_ms=VFR_STARTS_MS, offset_ms=0, size=(64, 48)):
    """Encode flat grey frames with the given presentation times (time base 1 ms)."""
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=30)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        for k, start in enumerate(starts_ms):
            picture = np.full((size[1], size[0], 3), _level(k), np.uint8)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts, frame.time_base = start + offset_ms, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_audio_only(path, codec="aac"):
    """A second of silence and no video stream."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=16000)
        fmt, dtype = ("fltp", np.float32) if codec == "aac" else ("s16", np.int16)
        for i in range(16):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype), format=fmt, layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module", params=["mp4", "mkv"])
def vfr_video(request, tmp_path_factory):
    return write_vfr_video(tmp_path_factory.mktemp("vfr") / f"vfr.{request.param}", offset_ms=500)


def test_backend_names():
    assert resolve_backend("pyav") == "pyav" and resolve_backend("decord") == "decord"
    with pytest.raises(ValueError):
        resolve_backend("opencv")


@pytest.mark.parametrize("backend", BACKENDS)
def test_vfr_timestamps_are_read_relative_to_the_first_frame(vfr_video, backend):
    """Both backends see the written times (the stream starts at 500 ms, reported as 0)."""
    every = plan_frames(vfr_video, backend=backend)
    assert every.indices.tolist() == list(range(N_VFR))
    np.testing.assert_allclose(every.frame_times, np.asarray(VFR_STARTS_MS) / 1000, atol=1e-4)
    assert video_info(vfr_video, backend=backend)["duration"] == pytest.approx(10.1, abs=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kwargs", [{"fps": 2.0}, {"num_frames": 19}, {"fps": 1.0, "max_frames": 8}])
def test_vfr_frames_are_the_ones_on_screen_at_uniform_times(vfr_video, backend, kwargs):
    plan = plan_frames(vfr_video, backend=backend, **kwargs)
    starts = np.asarray(VFR_STARTS_MS) / 1000
    ends = np.append(starts[1:], 10.1)
    picked = plan.indices
    # the frame on screen at each target: started at or before it, not yet replaced by the next
    assert np.all(starts[picked] <= plan.target_times + 1e-4)
    assert np.all(plan.target_times < ends[picked] + 1e-4)
    assert np.all(np.abs(plan.frame_times - plan.target_times) <= ends[picked] - starts[picked] + 1e-4)
    frames = decode_video(vfr_video, size=32, backend=backend, **kwargs)
    levels = np.array([_level(k) for k in range(N_VFR)])
    decoded = np.abs(frames.reshape(len(frames), -1).mean(1)[:, None] - levels[None]).argmin(1)
    assert decoded.tolist() == picked.tolist()  # the decoder returned exactly those frames


def test_index_uniform_sampling_would_crowd_the_dense_start(vfr_video):
    plan = plan_frames(vfr_video, backend="pyav", fps=2.0)  # 10.1 s at 2 fps -> 20 frames
    starts = np.asarray(VFR_STARTS_MS) / 1000
    by_index = sample_indices(N_VFR, N_VFR / 10.1, fps=2.0)  # today's rule, even with an honest fps
    assert len(plan.indices) == len(by_index) == 20
    assert (starts[by_index] < 1.6).sum() == 15 and (starts[plan.indices] < 1.6).sum() == 3
    assert np.abs(starts[by_index] - plan.target_times).max() > 4.0  # seconds off target
    assert np.abs(starts[plan.indices] - plan.target_times).max() <= 0.5


@needs_decord
@pytest.mark.parametrize("path", [MP4, MKV, MOV], ids=lambda p: p.suffix)
def test_backends_pick_the_same_frames_and_near_same_pixels(path):
    for kwargs in ({"fps": 2.0}, {"num_frames": 8}):
        by_decord = plan_frames(path, backend="decord", **kwargs)
        by_pyav = plan_frames(path, backend="pyav", **kwargs)
        assert by_decord.indices.tolist() == by_pyav.indices.tolist()
        np.testing.assert_allclose(by_decord.frame_times, by_pyav.frame_times, atol=1e-4)
    ours = decode_video(path, num_frames=8, size=224, backend="decord").astype(np.float32)
    theirs = decode_video(path, num_frames=8, size=224, backend="pyav").astype(np.float32)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).mean() < MAX_MEAN_PIXEL_DIFF
    native = np.abs(decode_video(path, num_frames=2, backend="decord").astype(np.float32)
                    - decode_video(path, num_frames=2, backend="pyav")).mean()
    assert native < 0.5  # same YUV -> RGB conversion (identical here)


@needs_decord
def test_backends_agree_on_video_info():
    for path in (MP4, MKV, MOV):
        a, b = video_info(path, backend="decord"), video_info(path, backend="pyav")
        assert (a["n_frames"], a["height"], a["width"]) == (b["n_frames"], b["height"], b["width"])
        assert a["fps"] == pytest.approx(b["fps"]) and a["duration"] == pytest.approx(b["duration"], abs=1e-4)
    assert video_info(MP4)["duration"] == pytest.approx(355 / 19.62, abs=1e-4)


def test_presentation_duration_of_a_one_frame_clip(tmp_path):
    path = write_vfr_video(tmp_path / "one.mkv", starts_ms=[0])
    assert presentation_duration(plan_frames(path, backend="pyav").frame_times, 30.0) == pytest.approx(1 / 30)
    assert decode_video(path, fps=2.0, size=16, backend="pyav").shape == (1, 16, 16, 3)


def _one_line_error(path, backend, match):
    with pytest.raises(VideoDecodeError, match=match) as info:
        decode_video(path, fps=2.0, size=32, backend=backend)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, codec", [("song.m4a", "aac"), ("song.mp4", "aac"), ("song.wav", "pcm_s16le")])
def test_audio_only_file_says_so(tmp_path, backend, name, codec):
    path = write_audio_only(tmp_path / name, codec)
    assert _one_line_error(path, backend, "no video stream") == f"{path}: no video stream (audio only)"


@pytest.mark.parametrize("backend", BACKENDS)
def test_directory_is_not_a_video_file(tmp_path, backend):
    folder = tmp_path / "x.mp4"
    folder.mkdir()
    assert _one_line_error(folder, backend, "directory") == f"{folder}: is a directory, not a video file"
    _one_line_error(tmp_path / "missing.mp4", backend, "video file not found")


@pytest.mark.parametrize("backend", BACKENDS)
def test_corrupt_empty_and_text_files(tmp_path, backend):
    _one_line_error(CORRUPT, backend, "corrupt or unreadable")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    _one_line_error(empty, backend, "cannot open video")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    _one_line_error(text, backend, "cannot open video")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("suffix, demuxer", [(".png", "png_pipe"), (".jpg", "jpeg_pipe"), (".gif", "gif")])
def test_an_image_renamed_mp4_is_refused_by_every_backend(tmp_path, backend, suffix, demuxer):
    """PyAV once decoded a picture called .mp4 as a one-frame video while decord refused it."""
    from PIL import Image
    image = tmp_path / f"still{suffix}"
    Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(image)
    renamed = tmp_path / "still.mp4"
    image.rename(renamed)
    message = _one_line_error(renamed, backend, "not a video")
    assert message == f"{renamed}: an image file ({demuxer}), not a video"


@pytest.fixture(scope="module")
def rotated_video(tmp_path_factory):
    """64x32 coded frames with a white stripe on the left, and a display matrix turning them 90
    degrees counter-clockwise (what a phone writes for a portrait video)."""
    import av
    path = tmp_path_factory.mktemp("rot") / "rot.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(90)
        for _ in range(5):
            image = np.zeros((32, 64, 3), np.uint8)
            image[:, :8] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_rotated_video_is_decoded_upright_by_every_backend(rotated_video, backend):
    """The display rotation is applied: 64 x 32 coded, 32 wide x 64 high shown; the stripe on the
    coded picture's left ends up along the bottom, as FFmpeg shows it."""
    frames = decode_video(rotated_video, num_frames=1, backend=backend)
    assert frames.shape == (1, 64, 32, 3)
    assert frames[0, -8:].mean() > 200 and frames[0, :32].mean() < 30
