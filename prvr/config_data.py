"""Where a dataset's annotations, videos or released features come from (config section `data`).

The demo generates everything (`videos: generated`); a real benchmark names its own annotation
files per split and one video source. config/datasets/<name>.yaml fills this section for TVR,
ActivityNet Captions and Charades-STA; paths are relative to the working directory (`data/` by
default), so a user puts the files there or points the keys elsewhere.

Video sources (`videos`):
  generated          the demo corpus (rule generate_corpus)
  directory          `video_dir` holds one file `<video id>.<ext>` per video (any user's videos)
  frame_folders      `video_dir` holds one folder `<video id>/` of images per video, shown at
                     `folder_fps` (TVR's released 3 fps JPEG frames)
  charades_archive   `archive_url` is downloaded (resumable, `archive_sha256` checked) and
                     extracted into `video_dir` by a local rule
  youtube            ActivityNet: every video id fetched from YouTube by yt-dlp into `video_dir`;
                     ids that cannot be fetched are listed in results/<dataset>/missing_videos/<split>.tsv
                     and left out (every table says how many test queries that removed)
  released_features  the authors' released HDF5 features (`released_video_h5`, `released_text_h5`)
                     are validated and imported; nothing is decoded
  released_bigfile   MS-SL's released features for the I3D-feature baselines: a BigFile folder
                     (`released_bigfile_dir`: FeatureData/<feature>/ with feature.bin, id.txt,
                     shape.txt, video2frames.txt) and its RoBERTa caption HDF5 (`released_text_h5`:
                     TextData/roberta_<collection>_query_feat.hdf5), validated and imported the same
                     way (prvr.sources.bigfile_release.import_bigfile_release); nothing is decoded

feature_cache: every run reads one resampled float16 cache of the dataset (prvr.store.feature_cache:
built once per frame_tokens x max_query_len, memory-mapped, never the whole store in RAM) instead of
resampling the HDF5 stores into float32 arrays itself. On for the benchmarks; the demo keeps the
float32 path its published numbers were made with.
"""
from __future__ import annotations

from dataclasses import dataclass, field

RELEASED_SOURCES = ("released_features", "released_bigfile")
# the feature families of the paper's comparison; whether their caption features are CLIP text tokens
# (the TCPL teacher and DL-DKD's teacher read CLIP; MS-SL's release pairs I3D frames with RoBERTa)
FAMILY_TEXT_IS_CLIP = {"CLIP-L/14": True, "I3D+RoBERTa": False, "SlowFast+CLIP": True}  # features come ready-made: nothing is decoded
VIDEO_SOURCES = ("generated", "directory", "frame_folders", "charades_archive", "youtube") + RELEASED_SOURCES


@dataclass
class SplitSource:
    """One split's annotation file in the benchmark's own format (tvr jsonl, activitynet json,
    charades txt); path null: the split is generated (demo) or held out of train (val)."""
    path: str | None = None
    format: str = field(default="tvr", metadata={"choices": ("tvr", "activitynet", "charades", "qvhighlights")})


@dataclass
class DataConfig:
    """Annotation files, the held-out selection split, and the video source of one dataset."""
    train: SplitSource = field(default_factory=SplitSource)
    val: SplitSource = field(default_factory=SplitSource)
    test: SplitSource = field(default_factory=SplitSource)
    val_fraction: float = 0.1  # share of train videos held out as val when data.val.path is null
    bad_spans: str = field(default="error", metadata={"choices": ("error", "fix", "keep")})
    durations: tuple[str, ...] = ()  # Charades: Charades_v1_train.csv, Charades_v1_test.csv (`length`)
    videos: str = field(default="generated", metadata={"choices": VIDEO_SOURCES})
    video_dir: str | None = None
    folder_fps: float = 3.0
    archive_url: str | None = None
    archive_sha256: str | None = None
    archive_members_under: str | None = None  # the archive's folder holding the videos (Charades_v1_480)
    download_workers: int = 4
    released_video_h5: str | None = None
    released_text_h5: str | None = None
    released_video_prefix: str | None = None  # ActivityNet: their video keys drop "v_"
    feature_family: str | None = None  # the features' family in the tables; None: feature_family() derives it
    teacher_video_h5: str | None = None  # DL-DKD's CLIP ViT-B/32 teacher: frames per video (their vid_features file)
    teacher_text_h5: str | None = None   # and one sentence vector per caption (their query_feat file)
    released_bigfile_dir: str | None = None  # videos: released_bigfile: MS-SL's FeatureData/<feature>/ folder
    feature_cache: bool = False  # train and evaluate from one float16 resampled cache per dataset


def family_label(declared: str | None, videos: str | None, clip_model: str, clip_pretrained: str | None = None) -> str:
    """The features' family and where they come from, e.g. "I3D+RoBERTa (MS-SL's release)",
    "CLIP-L/14 (the authors' release)", "CLIP-L/14 (extracted here, openai)"; the part before " ("
    is the family (`family_of`), compared with each reported row's `features`."""
    if declared:
        return declared
    if videos == "released_bigfile":
        return "I3D+RoBERTa (MS-SL's release)"
    if videos == "released_features":
        return "CLIP-L/14 (the authors' release)"
    family = "CLIP-L/14" if clip_model == "ViT-L-14" else f"CLIP {clip_model}"
    return f"{family} (extracted here, {clip_pretrained or 'pretrained in the DAG'})"


def family_of(label: str) -> str:
    """"CLIP-L/14 (extracted here, openai)" -> "CLIP-L/14"."""
    return label.split(" (", 1)[0]


def feature_family(data: "DataConfig", clip_model: str) -> str:
    """The family of a config's features (family_label without where they come from)."""
    return family_of(family_label(data.feature_family, data.videos, clip_model))


def captions_are_clip(data: "DataConfig", clip_model: str) -> bool:
    """Whether the caption features are CLIP text tokens (extracted here: always)."""
    return FAMILY_TEXT_IS_CLIP.get(feature_family(data, clip_model), True)
