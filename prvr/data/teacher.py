"""DL-DKD's frozen CLIP teacher read beside a training split (data.teacher_video_h5 / teacher_text_h5,
imported by prvr.sources.teacher_release): per video its teacher frames resampled to the student's
frame_tokens, so that frame n of both covers the same stretch of the video, and per caption its
sentence vector.

    teacher = TeacherFeatures("teacher_video.h5", "teacher_text.h5", frame_tokens=128)
    teacher.frames("vid7")          # (128, D) float32
    teacher.sentence("vid7#enc#0")  # (D,) float32

The stores are opened on first use and read an entry at a time (TVR train: 17k videos of 512-d
frames stay on disk); every array is checked as read (FeatureCheck names the file and the id).
Their code resamples the student's frames to the teacher's frame count instead; here both have
frame_tokens rows, the student's as in every other run (config/README.md, DL-DKD).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from prvr.store.feature_store import FeatureCheck, FeatureError, FeatureStore
from prvr.store.resample import resample_frames


class TeacherFeatures:
    """Teacher frames and sentence vectors of one dataset, read on access."""

    def __init__(self, video_store: str | Path, text_store: str | Path, frame_tokens: int):
        self.video_path, self.text_path, self.frame_tokens = Path(video_store), Path(text_store), frame_tokens
        self.check_video = FeatureCheck(self.video_path, "teacher video")
        self.check_text = FeatureCheck(self.text_path, "teacher caption")
        self._stores: tuple[FeatureStore, FeatureStore] | None = None

    def _open(self) -> tuple[FeatureStore, FeatureStore]:
        if self._stores is None:
            self._stores = (FeatureStore(self.video_path), FeatureStore(self.text_path))
        return self._stores

    def frames(self, vid: str) -> np.ndarray:
        """(frame_tokens, D) float32: the video's teacher frames resampled as the student's."""
        frames = self.check_video(vid, self._open()[0][vid])
        return resample_frames(frames, self.frame_tokens).astype(np.float32)

    def sentence(self, caption_id: str) -> np.ndarray:
        """(D,) float32: the caption's teacher sentence vector (their file: one row per caption)."""
        rows = self.check_text(caption_id, self._open()[1][caption_id])
        if rows.shape[0] != 1:
            raise FeatureError(f"{self.text_path}: teacher caption {caption_id!r} has {rows.shape[0]} rows, "
                               "expected one sentence vector")
        return rows[0].astype(np.float32)

    def close(self) -> None:
        if self._stores is not None:
            for store in self._stores:
                store.close()
            self._stores = None

    def __getstate__(self) -> dict:  # DataLoader workers: each opens its own handles
        return {**self.__dict__, "_stores": None}
