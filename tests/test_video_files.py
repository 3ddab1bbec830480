"""Video ids are matched to files by exact name (prvr.video.video_files), never as glob patterns."""
import pytest

from prvr.video.video_files import VideoFileError, video_files


def touch(folder, *names):
    for name in names:
        (folder / name).write_bytes(b"x")


def test_brackets_and_stars_are_literal(tmp_path):
    touch(tmp_path, "vidb.mp4", "vid[b].mp4", "v1.mp4", "v*.mkv")
    paths = video_files(tmp_path, ["vid[b]", "v*", "v1"])
    assert paths == {"vid[b]": tmp_path / "vid[b].mp4", "v*": tmp_path / "v*.mkv", "v1": tmp_path / "v1.mp4"}


def test_dotted_ids_and_prefixes_do_not_match_each_other(tmp_path):
    touch(tmp_path, "v1.5.mp4", "v10.mp4")
    assert video_files(tmp_path, ["v1.5"]) == {"v1.5": tmp_path / "v1.5.mp4"}
    with pytest.raises(VideoFileError, match=r"no video file for id 'v1'"):
        video_files(tmp_path, ["v1"])  # neither v10.mp4 nor v1.5.mp4 is v1's


def test_two_files_for_one_id_is_an_error_naming_both(tmp_path):
    touch(tmp_path, "v1.mp4", "v1.mkv")
    with pytest.raises(VideoFileError, match=r"2 files for id 'v1': v1.mkv, v1.mp4"):
        video_files(tmp_path, ["v1"])


def test_a_folder_named_like_a_video_is_not_one(tmp_path):
    (tmp_path / "x.mp4").mkdir()
    with pytest.raises(VideoFileError, match=rf"{tmp_path}: no video file for id 'x'"):
        video_files(tmp_path, ["x"])
    with pytest.raises(VideoFileError, match="cannot list the video folder"):
        video_files(tmp_path / "missing", ["x"])
