"""Frame folders (TVR's 3 fps JPEGs): natural order, sampling by time, resize + crop, error lines."""
import numpy as np
import pytest
from PIL import Image

from prvr.video.decoding import VideoDecodeError, decode_frames, decode_video, plan_frames, video_info
from prvr.video.decoders.frame_folder import list_images


def _grey(k: int) -> int:
    return 10 + 20 * k


def write_folder(folder, n=12, name="{k}.png", size=(40, 30)):
    """n lossless images, image k flat grey level 10 + 20 k; unpadded names test natural order."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        Image.new("RGB", size, (_grey(k),) * 3).save(folder / name.format(k=k + 1))
    return folder


def _which(frames):
    return [(round(frame.mean()) - 10) // 20 for frame in frames]


def test_images_in_natural_order_and_only_images(tmp_path):
    folder = write_folder(tmp_path / "vid", n=12, name="frame_{k}.png")
    (folder / "notes.txt").write_text("not a frame")
    (folder / "._frame_1.png").write_bytes(b"macOS resource fork")
    (folder / "sub.jpg").mkdir()  # a directory is never an image
    names = [path.name for path in list_images(folder)]
    assert names == [f"frame_{k}.png" for k in range(1, 13)]  # frame_2 before frame_10


def test_sampling_by_time_at_the_folder_rate(tmp_path):
    folder = write_folder(tmp_path / "vid")  # 12 images at 3 fps: 4 s
    assert video_info(folder, folder_fps=3.0)["duration"] == pytest.approx(4.0)
    frames = decode_frames(folder, 3.0, fps=1.0)  # targets 0.5, 1.5, 2.5, 3.5 s
    assert frames.shape == (4, 30, 40, 3)
    assert _which(frames) == [1, 4, 7, 10]
    assert plan_frames(folder, fps=1.0, folder_fps=3.0).indices.tolist() == [1, 4, 7, 10]
    assert _which(decode_frames(folder, 3.0, num_frames=24)) == [k // 2 for k in range(24)]
    assert _which(decode_frames(folder, 3.0)) == list(range(12))
    assert _which(decode_frames(folder, 3.0, fps=2.0, max_frames=2)) == [3, 9]  # 1 s and 3 s
    np.testing.assert_array_equal(decode_video(folder, fps=1.0, folder_fps=3.0), frames)


def test_resize_short_side_and_centre_crop_like_clip(tmp_path):
    folder = tmp_path / "vid"
    folder.mkdir()
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(picture).save(folder / "00001.png")
    frames = decode_frames(folder, 3.0, size=16)
    # by hand: 40x30 -> bicubic 21x16 (short side 16, aspect kept) -> columns 2..17 (torchvision's rounding)
    expected = np.asarray(Image.fromarray(picture).resize((21, 16), Image.BICUBIC))[:, 2:18]
    np.testing.assert_array_equal(frames[0], expected)


def test_jpegs_of_mixed_sizes_crop_to_one_size(tmp_path):
    folder = tmp_path / "vid"
    folder.mkdir()
    Image.new("RGB", (64, 48), (200, 0, 0)).save(folder / "00001.jpg")
    Image.new("RGB", (48, 64), (0, 200, 0)).save(folder / "00002.JPEG")
    frames = decode_frames(folder, 3.0, size=24)
    assert frames.shape == (2, 24, 24, 3)
    assert frames[0, ..., 0].mean() > 150 and frames[1, ..., 1].mean() > 150
    with pytest.raises(VideoDecodeError, match="00002.JPEG: image is 48x64, 00001.jpg is 64x48"):
        decode_frames(folder, 3.0)  # native size cannot stack


def _one_line(match, fn, *args, **kwargs):
    with pytest.raises(VideoDecodeError, match=match) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_empty_folder_and_unreadable_image_are_one_line_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no frames here")
    assert _one_line("no images", decode_frames, empty, 3.0).startswith(f"{empty}: ")
    folder = write_folder(tmp_path / "vid", n=4, name="{k:05d}.jpg")
    (folder / "00003.jpg").write_bytes(b"\xff\xd8 truncated")
    message = _one_line("unreadable image", decode_frames, folder, 3.0, size=16)
    assert message.startswith(f"{folder / '00003.jpg'}: unreadable image")
    assert _one_line("not found", decode_frames, tmp_path / "nope", 3.0).startswith(str(tmp_path / "nope"))


def test_a_folder_is_decoded_only_when_asked(tmp_path):
    folder = write_folder(tmp_path / "vid.mp4", n=3)
    message = _one_line("directory", decode_video, folder, fps=2.0)
    assert message == f"{folder}: is a directory, not a video file"
    assert decode_video(folder, folder_fps=3.0).shape == (3, 30, 40, 3)
    with pytest.raises(ValueError):
        decode_frames(folder, 0.0)
