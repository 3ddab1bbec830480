"""decode_video_chunks: a long video decoded a piece at a time gives decode_video's frames to the bit,
on every backend and on a frame folder, whatever the piece size (repeated frames included); a corrupt
file fails with decode_video's one line; CLIP features computed piece by piece equal the whole path's."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from prvr.config import FramesConfig
from prvr.features.clip import load_clip
from prvr.features.extract import video_frame_features
from prvr.video.decoding import VideoDecodeError, decode_video, decode_video_chunks, resolve_backend

VIDEOS = Path(__file__).parent / "data" / "videos"
MP4 = VIDEOS / "v_GGSY1Qvo990.mp4"  # 355 frames at 19.62 fps
MOV = VIDEOS / "decord_video_0.mov"  # 3 frames at 30 fps
CORRUPT = VIDEOS / "decord_corrupted.mp4"
BACKENDS = ["pyav"] + (["decord"] if resolve_backend("auto") == "decord" else [])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_pieces_are_the_whole_decode(backend, chunk):
    whole = decode_video(MP4, fps=4.0, size=32, backend=backend)  # (T, 32, 32, 3)
    pieces = list(decode_video_chunks(MP4, chunk, fps=4.0, size=32, backend=backend))
    assert all(len(p) == chunk for p in pieces[:-1]) and 0 < len(pieces[-1]) <= chunk
    np.testing.assert_array_equal(np.concatenate(pieces), whole)


@pytest.mark.parametrize("backend", BACKENDS)
def test_repeated_frames_and_a_corrupt_file(backend):
    """num_frames > the video's frames picks frames twice; a corrupt file is decode_video's one line."""
    whole = decode_video(MOV, num_frames=8, size=16, backend=backend)
    np.testing.assert_array_equal(np.concatenate(list(decode_video_chunks(MOV, 3, num_frames=8, size=16,
                                                                          backend=backend))), whole)
    with pytest.raises(VideoDecodeError) as whole_error:
        decode_video(CORRUPT, fps=2.0, backend=backend)
    with pytest.raises(VideoDecodeError) as piece_error:
        list(decode_video_chunks(CORRUPT, 4, fps=2.0, backend=backend))
    assert str(piece_error.value) == str(whole_error.value) and "\n" not in str(piece_error.value)


def test_a_frame_folder_in_pieces(tmp_path):
    rng = np.random.default_rng(0)
    for k in range(23):
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(tmp_path / f"{k + 1:05d}.png")
    whole = decode_video(tmp_path, fps=2.0, size=24, folder_fps=3.0)
    pieces = list(decode_video_chunks(tmp_path, 5, fps=2.0, size=24, folder_fps=3.0))
    np.testing.assert_array_equal(np.concatenate(pieces), whole)
    with pytest.raises(ValueError):
        next(decode_video_chunks(tmp_path, 0, folder_fps=3.0))


def test_streamed_clip_features_equal_the_whole_path():
    torch.manual_seed(0)
    encoder = load_clip("prvr-tiny-clip", None, batch_size=4, allow_random=True)  # pieces of 2 batches
    frames_cfg = FramesConfig(fps=6.0, num_frames=None, max_frames=None)
    whole = video_frame_features(MP4, encoder, frames_cfg)
    streamed = video_frame_features(MP4, encoder, frames_cfg, stream_batches=2)
    assert whole.shape[0] > 8 * encoder.batch_size
    np.testing.assert_array_equal(streamed, whole)
