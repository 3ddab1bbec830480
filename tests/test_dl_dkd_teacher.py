"""DL-DKD's own CLIP teacher files (data.teacher_video_h5 / teacher_text_h5): imported against the
caption files (their fallback key "<vid>#<k>"), read beside the training split at the student's
frame_tokens, batched in query order, and distilled instead of the training features' own tokens."""
import h5py
import numpy as np
import pytest
import torch

from prvr.config_losses import DistillConfig
from prvr.data.dataset import PRVRDataset, collate_videos
from prvr.data.teacher import TeacherFeatures
from prvr.losses.distill import DistillLoss
from prvr.sources.teacher_release import dl_dkd_caption_key, import_teacher
from prvr.store.feature_store import FeatureError, UnknownIdError
from prvr.store.resample import resample_frames

VIDS = {"va": 5, "vb": 9, "vc": 3}  # video -> frames


def _write(path, entries):
    with h5py.File(path, "w") as f:
        for key, value in entries.items():
            f[key] = value


@pytest.fixture
def split(tmp_path):
    """A train split (two captions per video) with student stores and DL-DKD-layout teacher files."""
    rng = np.random.default_rng(0)
    caps = [f"{v}#enc#{k}" for v in VIDS for k in range(2)]
    (tmp_path / "train.txt").write_text("".join(f"{c} caption {c}\n" for c in caps))
    _write(tmp_path / "v.h5", {v: rng.normal(size=(n, 6)).astype(np.float32) for v, n in VIDS.items()})
    _write(tmp_path / "t.h5", {c: rng.normal(size=(4, 6)).astype(np.float32) for c in caps})
    frames = {v: rng.normal(size=(n + 2, 5)).astype(np.float32) for v, n in VIDS.items()}
    sentences = {c: rng.normal(size=(1, 5)).astype(np.float32) for c in caps}
    _write(tmp_path / "their_vid.hdf5", frames)
    # their text file: some ids as "<vid>#enc#<k>", the others under their loader's fallback "<vid>#<k>"
    _write(tmp_path / "their_query.hdf5", {(c if i % 2 else dl_dkd_caption_key(c)): s
                                           for i, (c, s) in enumerate(sentences.items())})
    return tmp_path, frames, sentences


def _import(root):
    return import_teacher(root / "their_vid.hdf5", root / "their_query.hdf5", {"train": root / "train.txt"},
                          root / "teacher_video.h5", root / "teacher_text.h5", progress=False)


def test_their_files_import_with_the_fallback_key(split):
    root, frames, sentences = split
    summary = _import(root)
    assert (summary["videos"], summary["captions"], summary["video_dim"], summary["text_dim"]) == (3, 6, 5, 5)
    teacher = TeacherFeatures(root / "teacher_video.h5", root / "teacher_text.h5", frame_tokens=4)
    assert np.allclose(teacher.frames("vb"), resample_frames(frames["vb"], 4))
    assert np.array_equal(teacher.sentence("vb#enc#0"), sentences["vb#enc#0"][0])  # stored as "vb#0" there


def test_a_missing_caption_or_other_width_is_one_line(split):
    root, frames, sentences = split
    _write(root / "their_query.hdf5", {c: s for c, s in list(sentences.items())[1:]})
    with pytest.raises(UnknownIdError, match=r"their_query.hdf5: caption 'va#enc#0' \(in train.txt\) not found"):
        _import(root)
    _write(root / "their_query.hdf5", {c: np.zeros((1, 7), np.float32) for c in sentences})
    with pytest.raises(FeatureError, match=r"their_query.hdf5: caption 'va#enc#0' has dimension 7, expected 5"):
        _import(root)


def test_the_batch_carries_the_teacher_in_query_order(split):
    root, frames, sentences = split
    _import(root)
    data = PRVRDataset(root / "train.txt", root / "v.h5", root / "t.h5", frame_tokens=4)
    data.teacher = TeacherFeatures(root / "teacher_video.h5", root / "teacher_text.h5", frame_tokens=4)
    batch = collate_videos([data[2], data[0]])  # vc, va
    assert batch["teacher_frames"].shape == (2, 4, 5) and batch["frame_feats"].shape == (2, 4, 6)
    order = ["vc#enc#0", "vc#enc#1", "va#enc#0", "va#enc#1"]
    assert torch.equal(batch["teacher_eot"], torch.from_numpy(np.stack([sentences[c][0] for c in order])))
    assert "teacher_frames" not in collate_videos([PRVRDataset(root / "train.txt", root / "v.h5", root / "t.h5", 4)[0]])


def test_distillation_follows_the_teacher_files_when_the_batch_has_them():
    torch.manual_seed(0)
    q, f = torch.randn(4, 8), torch.randn(2, 3, 8)  # student: 4 captions, 2 videos of 3 frames
    owner = torch.tensor([0, 0, 1, 1])
    own = {"query_eot": torch.randn(4, 6), "frame_feats": torch.randn(2, 3, 6)}  # the features' own tokens
    teacher = {"teacher_eot": torch.randn(4, 5), "teacher_frames": torch.randn(2, 3, 5)}
    loss = DistillLoss(DistillConfig(enabled=True))
    with_own = loss(query=q, frame_tokens=f, query_to_video=owner, **own)["distill"]
    with_teacher = loss(query=q, frame_tokens=f, query_to_video=owner, **own, **teacher)["distill"]
    only_teacher = loss(query=q, frame_tokens=f, query_to_video=owner, query_eot=teacher["teacher_eot"],
                        frame_feats=teacher["teacher_frames"])["distill"]
    assert torch.equal(with_teacher, only_teacher) and not torch.allclose(with_teacher, with_own)
