"""DL-DKD's frozen CLIP teacher features as a pipeline source (`data.teacher_video_h5`,
`data.teacher_text_h5`): its ICCV and ++ code read a CLIP ViT-B/32 teacher from two files of their
own, beside the student's I3D+RoBERTa features:

  <root>/<collection>/FeatureData/new_clip_vit_32_<collection>_vid_features.hdf5   f[video_id] -> (T, 512)
  <root>/<collection>/TextData/clip_ViT_B_32_<collection>_query_feat.hdf5          f[cap_id] -> (1, 512),
      or, where the caption id is absent, f["<vid>#<k>"] (their loader's fallback for "<vid>#enc#<k>")

They are validated against the caption files the teacher is used on (train, and the selection split;
every id present, frames and sentences of one dimension, finite) and imported into this pipeline's
layout (prvr.sources.released.import_released), one (1, D) row per caption:

    import_teacher("…_vid_features.hdf5", "…_query_feat.hdf5", {"train": "train.caption.txt"},
                   "teacher_video.h5", "teacher_text.h5")
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from prvr.sources.released import import_released


def dl_dkd_caption_key(caption_id: str) -> str:
    """Their loader's fallback key: "<vid>#enc#<k>" -> "<vid>#<k>"."""
    return "#".join(caption_id.split("#enc#"))


def import_teacher(video_h5: str | Path, text_h5: str | Path, caption_files: Mapping[str, str | Path],
                   out_video_h5: str | Path, out_text_h5: str | Path, progress: bool = True) -> dict:
    """Validate DL-DKD's teacher files against the caption files and write our layout; frames and
    sentence vectors must have one dimension (the teacher compares them). One-line errors name the
    file and the first bad id."""
    summary = import_released(video_h5, text_h5, caption_files, out_video_h5, out_text_h5, progress=progress,
                              other_caption_key=dl_dkd_caption_key)
    return {**summary, "source": "dl_dkd_teacher"}
