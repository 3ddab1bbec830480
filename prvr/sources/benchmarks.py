"""A benchmark's own annotation files -> the pipeline's per-split annotation table and video list.

Reads config `data` (prvr.config_data): each split's file in its own format (TVR jsonl, ActivityNet
Captions json, Charades-STA txt), Charades durations from Charades_v1_*.csv, and writes
`annotations/{train,val,test}.jsonl` in the TVR layout the rest of the pipeline reads (caption ids
keep the conventions of the PRVR code family: see prvr.sources.annotations). `write_video_list` makes
`videos.txt`, the one sorted list of every split's video ids that the feature shards read.

When `data.val.path` is null, val is a held-out share (`data.val_fraction`) of the train videos,
chosen by the sha256 of the video id (the same ids on every machine, whatever the file order) and
removed from train. With `eval.selection: reported_split` (the authors' protocol) train keeps every
video and the epoch is selected on the test split (the train rule reads the test captions as val).
Splits must not share a video (an error naming both files).

    summary = write_benchmark_tables(cfg.data, cfg.eval.selection, Path("results/tvr"))
"""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

from prvr.errors import AnnotationError
from prvr.io import write_text
from prvr.sources.annotations import Query, read_annotations, read_tvr_jsonl
from prvr.store.splits import check_disjoint_splits

SPLITS = ("train", "val", "test")


def read_durations(csv_files) -> dict[str, float]:
    """Charades_v1_{train,test}.csv: video id (column `id`) -> seconds (column `length`)."""
    durations = {}
    for path in map(Path, csv_files):
        try:
            rows = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))
        except FileNotFoundError:
            raise AnnotationError(f"{path}: file not found (data.durations)") from None
        for line, row in enumerate(rows, start=2):
            try:
                durations[row["id"]] = float(row["length"])
            except (KeyError, TypeError, ValueError):
                raise AnnotationError(f"{path}:{line}: expected columns id and length (seconds)") from None
    return durations


def read_split_file(source, bad_spans: str, durations: dict[str, float] | None) -> list[Query]:
    """One split's queries from its file in its own format (config data.<split>); only Charades-STA's
    reader takes the durations (its files have none)."""
    options = {"durations": durations} if source.format == "charades" else {}
    return read_annotations(source.path, source.format, bad_spans=bad_spans, **options)


def held_out_videos(vids, fraction: float) -> set[str]:
    """round(fraction x n) of the distinct `vids` with the smallest sha256 of their id (at least 1)."""
    distinct = sorted(set(vids), key=lambda v: hashlib.sha256(v.encode()).hexdigest())
    return set(distinct[:max(1, round(fraction * len(distinct)))])


def split_sources(data, selection: str, name: str) -> list[str]:
    """The config data.<source> entries split `name` is made from: test from test; val from val, or
    held out of train, or none under reported_split (the authors' protocol: selection on test, train
    keeps every video); train from train. The workflow makes these a split's only inputs."""
    if name not in SPLITS:
        raise ValueError(f"unknown split {name!r} (expected one of {', '.join(SPLITS)})")
    if name == "test" or (name == "val" and data.val.path):
        return [name]
    return [] if name == "val" and selection == "reported_split" else ["train"]


def benchmark_split(data, selection: str, name: str) -> list[Query]:
    """One split's queries, read from its split_sources and no other: train less the held-out videos
    when val is held out of it. The workflow converts each split in its own job, so an edit of the
    test file reconverts test alone (the video list checks the splits disjoint)."""
    sources = split_sources(data, selection, name)
    if not sources:
        return []
    durations = read_durations(data.durations) if data.durations else None
    rows = read_split_file(getattr(data, sources[0]), data.bad_spans, durations)
    if sources != ["train"] or data.val.path or selection == "reported_split":
        return rows
    chosen = held_out_videos([q.vid for q in rows], data.val_fraction)
    return [q for q in rows if (q.vid in chosen) == (name == "val")]


def benchmark_splits(data, selection: str) -> dict[str, list[Query]]:
    """{train, val, test: queries} as described in the module docstring, checked disjoint."""
    splits = {name: benchmark_split(data, selection, name) for name in SPLITS}
    check_disjoint_splits({f"{name} ({getattr(data, name).path or 'held out of train'})": [q.vid for q in rows]
                           for name, rows in splits.items() if rows})
    return splits


def _tvr_row(query: Query) -> str:
    return json.dumps({"vid_name": query.vid, "duration": query.duration, "ts": [query.start, query.end],
                       "desc": query.desc, "desc_id": query.desc_id}) + "\n"


def fixed_spans(data, splits=SPLITS) -> dict[str, int]:
    """With bad_spans "fix": how many spans of each split's file the policy changed (swapped or clipped)."""
    durations = read_durations(data.durations) if data.durations else None
    counts = {}
    for name in splits:
        source = getattr(data, name)
        if source.path and data.bad_spans == "fix":
            fixed = read_split_file(source, "fix", durations)
            raw = read_split_file(source, "keep", durations)
            counts[name] = sum((a.start, a.end) != (b.start, b.end) for a, b in zip(fixed, raw))
    return counts


def write_benchmark_tables(data, selection: str, out_dir: Path, splits=SPLITS) -> dict:
    """Write annotations/{split}.jsonl under out_dir for each of `splits`; return counts per split (and
    the spans that bad_spans "fix" changed, per source file). All three splits are checked disjoint
    here; one split alone is checked against the others by write_video_list."""
    if tuple(splits) == SPLITS:
        tables = benchmark_splits(data, selection)
    else:
        tables = {name: benchmark_split(data, selection, name) for name in splits}
    for name, rows in tables.items():
        write_text(out_dir / "annotations" / f"{name}.jsonl", "".join(_tvr_row(q) for q in rows))
    summary = {name: {"videos": len({q.vid for q in rows}), "queries": len(rows)} for name, rows in tables.items()}
    if data.bad_spans == "fix":
        summary["fixed_spans"] = fixed_spans(data, splits)
    return summary


def write_video_list(annotation_files, out: Path, missing: set[str] = frozenset(), listed=None) -> dict:
    """A video list: the video ids of the `listed` annotation files (default: all of them), sorted,
    without `missing` (videos that could not be fetched); every file of `annotation_files` is checked
    to share no video with another. Returns counts."""
    split_videos = {str(p): [q.vid for q in read_tvr_jsonl(p, bad_spans="keep")] for p in annotation_files}
    check_disjoint_splits(split_videos)
    chosen = [str(p) for p in (annotation_files if listed is None else listed)]
    videos = sorted({v for path in chosen for v in split_videos[path]})
    kept = [v for v in videos if v not in missing]
    for path in chosen:  # here, before any video is decoded, not at training
        vids = split_videos[path]
        check_split_size(Path(path), {v for v in vids if v not in missing}, len(set(vids) & set(missing)))
    write_text(out, "".join(v + "\n" for v in kept))
    return {"videos": len(videos), "listed": len(kept), "missing": len(videos) - len(kept)}


# the fewest videos a split file (by its name) needs: training contrasts a video with the others of
# its batch, so one video teaches nothing; the test needs one query (val is empty under the
# reported_split selection, which selects on test as the authors' code does)
MIN_SPLIT_VIDEOS = {"train": 2, "test": 1}


def check_split_size(path: Path, videos: set[str], left_out: int = 0) -> None:
    """A one-line AnnotationError when the split file `path` (train/val/test.jsonl) has too few videos
    with a file, e.g. an empty train.jsonl or every test video missing."""
    split = Path(path).name.split(".", 1)[0]
    need = MIN_SPLIT_VIDEOS.get(split, 0)
    if len(videos) < need:
        gone = f" ({left_out} more could not be fetched)" if left_out else ""
        raise AnnotationError(f"{path}: the {split} split has {len(videos)} video(s){gone}; "
                              f"{'training' if split == 'train' else 'an evaluation'} needs at least {need}")


def read_video_list(path: str | Path) -> list[str]:
    """videos.txt: one video id per line."""
    try:
        return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise AnnotationError(f"{path}: video list not found") from None
