"""Frame sampling by hand, and decoding of real files (mp4, mkv, a 3-frame mov, a corrupt mp4).

Decoding tests use the default backend (decord where it is installed, else PyAV); the two are
compared in test_decoding_backends.py, time-based sampling by hand in test_frame_sampling.py.
"""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prvr.video.decoding import (VideoDecodeError, decode_video, plan_frames, resolve_backend, sample_indices,
                                video_info)

VIDEOS = Path(__file__).parent / "data" / "videos"
MP4 = VIDEOS / "v_GGSY1Qvo990.mp4"  # 355 frames at 19.62 fps, 320x240
MKV = VIDEOS / "flipping_a_pancake.mkv"  # 310 frames at 30 fps, 426x240
MOV = VIDEOS / "decord_video_0.mov"  # 3 frames at 30 fps, 568x320 (0.1 s)
CORRUPT = VIDEOS / "decord_corrupted.mp4"  # 50 frames at 10 fps, broken h264 data
BACKENDS = ["pyav"] + (["decord"] if resolve_backend("auto") == "decord" else [])


def test_sample_by_count_takes_bin_centres():
    assert sample_indices(10, 25.0, num_frames=5).tolist() == [1, 3, 5, 7, 9]
    assert sample_indices(10, 25.0, num_frames=1).tolist() == [5]


def test_sample_by_fps():
    # 4 s at 25 fps, 2 fps -> 8 bins of 12.5 frames, centres 6.25, 18.75, ...
    assert sample_indices(100, 25.0, fps=2.0).tolist() == [6, 18, 31, 43, 56, 68, 81, 93]


def test_sample_never_exceeds_video_and_keeps_one_frame():
    assert sample_indices(5, 10.0, fps=30.0).tolist() == [0, 1, 2, 3, 4]  # fps above native
    assert sample_indices(3, 30.0, fps=2.0).tolist() == [1]  # 0.1 s clip still gives a frame
    assert sample_indices(4, 25.0).tolist() == [0, 1, 2, 3]  # no fps, no count: every frame


def test_sample_count_repeats_frames_of_short_videos_and_max_caps():
    assert sample_indices(2, 25.0, num_frames=4).tolist() == [0, 0, 1, 1]
    assert len(sample_indices(1000, 25.0, fps=5.0, max_frames=16)) == 16
    assert len(sample_indices(1000, 25.0, num_frames=64, max_frames=16)) == 16


@pytest.mark.parametrize("kwargs", [{"n_total": 0, "native_fps": 25.0},
                                    {"n_total": 10, "native_fps": 25.0, "fps": 0.0},
                                    {"n_total": 10, "native_fps": 0.0, "fps": 2.0},
                                    {"n_total": 10, "native_fps": 25.0, "num_frames": 0}])
def test_sample_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        sample_indices(**kwargs)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("path", [MP4, MKV, MOV, CORRUPT], ids=lambda p: p.name)
def test_constant_frame_rate_fixtures_sample_as_index_bins(path, backend):
    """Sampling by presentation time picks exactly the frames index bins picked (before VFR support)."""
    info = video_info(path, backend=backend)
    settings = [{"fps": f} for f in (0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 12.0, 30.0)] + \
               [{"num_frames": k} for k in (1, 2, 3, 8, 16, 32, 64, 100)] + \
               [{"fps": 2.0, "max_frames": 4}, {}]
    for kwargs in settings:
        expected = sample_indices(info["n_frames"], info["fps"], **kwargs).tolist()
        assert plan_frames(path, backend=backend, **kwargs).indices.tolist() == expected, kwargs


def test_video_info_of_fixtures():
    info = video_info(MP4)
    assert (info["n_frames"], info["height"], info["width"]) == (355, 240, 320)
    assert info["fps"] == pytest.approx(19.62, abs=0.01)
    assert video_info(MOV)["n_frames"] == 3


@pytest.mark.parametrize("path, expected_frames", [(MP4, 36), (MKV, 21), (MOV, 1)])
def test_decode_at_fps_resizes_and_crops_every_container(path, expected_frames):
    frames = decode_video(path, fps=2.0, size=32)
    assert frames.shape == (expected_frames, 32, 32, 3) and frames.dtype == np.uint8
    assert frames.std() > 5  # real picture content, not a blank buffer


def test_decode_native_size_and_max_frames():
    frames = decode_video(MKV, fps=2.0, max_frames=4)
    assert frames.shape == (4, 240, 426, 3)


def test_sampled_frames_are_the_indexed_frames():
    every = decode_video(MOV)  # (3, H, W, 3)
    assert every.shape[0] == 3
    picked = decode_video(MOV, num_frames=2)  # indices [0, 1]
    np.testing.assert_array_equal(picked, every[sample_indices(3, 30.0, num_frames=2)])


def test_resize_and_centre_crop_match_clip_preprocessing():
    """decord's resize + our crop vs PIL bicubic short-side resize + centre crop of the full frame."""
    size = 64
    ours = decode_video(MKV, num_frames=3, size=size).astype(np.float32)
    full = decode_video(MKV, num_frames=3)  # (3, 240, 426, 3)
    new_w = round(full.shape[2] * size / full.shape[1])  # 114
    reference, shifted = [], []
    for frame in full:
        resized = np.asarray(Image.fromarray(frame).resize((new_w, size), Image.BICUBIC), np.float32)
        left = round((new_w - size) / 2)
        reference.append(resized[:, left:left + size])
        shifted.append(resized[:, left + 1:left + 1 + size])  # one pixel off
    error = np.abs(ours - np.stack(reference)).mean()
    assert error < 4.0
    assert error < 0.5 * np.abs(ours - np.stack(shifted)).mean()  # the crop is the centred one


def _assert_one_line_error(path, match):
    with pytest.raises(VideoDecodeError, match=match) as info:
        decode_video(path, fps=2.0, size=32)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_corrupt_video_is_a_one_line_error():
    _assert_one_line_error(CORRUPT, "corrupt")


def test_missing_video_is_a_one_line_error(tmp_path):
    _assert_one_line_error(tmp_path / "nope.mp4", "not found")


def test_empty_and_non_video_files_are_one_line_errors(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    _assert_one_line_error(empty, "cannot open")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    _assert_one_line_error(text, "cannot open")
