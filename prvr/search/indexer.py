"""`index_videos`: encode a folder (or list) of one's own videos with a trained model into a search index.

    summary = index_videos("my_videos/", "runs/full/seed1/model.pt", "my_index",
                           clip_weights="results/demo/clip/tiny_clip.pt", workers=2)
    # {"videos": 12, "indexed": 3, "unchanged": 8, "changed": 1, "removed": 0, "broken": {"bad.mp4": "..."}}

Per video (prvr.search.encoding, the pipeline's decoding, CLIP and resampling): the model's video
encoder outputs its score reads (and frame_tokens), float16 by default, the duration and each frame
token's time span (prvr.search.moments.token_spans), stored as prvr.search.store describes. A video
longer than the index's `long_after` is stored as one row per window (prvr.search.windows), its token
spans in the long video's seconds.

Resumable: a video whose id is in the index with the same file content (sha256) is skipped (its entry
then names the file where it was found); one whose content changed is encoded again (its old rows are
dropped); one whose indexed file no longer exists, and that the run does not find elsewhere, is
dropped from the index with a line on stderr (`removed` in the counts). Videos are committed every
`shard_size` videos (or once their rows reach SHARD_ROWS), so an interrupted run keeps what it
finished; without `clip_weights`, an existing index is extended with the CLIP weights it names. A
file that cannot be read or decoded is listed (one line on stderr: file and reason) and skipped. An
index is only extended with the same model, CLIP and settings (windows included) it was built with
(a one-line error otherwise).

workers > 1: that many threads hash, decode and CLIP-encode the next videos while the main thread
runs the model and writes (decoding releases the GIL; torch ops run in parallel).
"""
from __future__ import annotations

import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from prvr.errors import PrvrError
from prvr.provenance import sha256_file
from prvr.search import store
from prvr.search.encoding import SearchEncoder
from prvr.search.inputs import list_videos
from prvr.search.moments import token_spans
from prvr.search.windows import is_long, resolve_windows, window_frames, window_spans, window_starts
from prvr.video.decoding import VideoDecodeError

SHARD_SIZE = 64  # videos per shard, i.e. per commit of index.json
SHARD_ROWS = 1024  # ... or fewer, once their rows (windows of long videos) reach this many
DTYPES = ("float16", "float32")


def index_videos(videos: str | Path, model_path: str | Path, out_index: str | Path,
                 clip_weights: str | Path | None = None, workers: int = 1, shard_size: int = SHARD_SIZE,
                 dtype: str = "float16", long_after: float | str | None = None, window: float | None = None,
                 stride: float | None = None, folder_fps: float | None = None) -> dict:
    """Index the videos of a folder or list file into `out_index`; returns the counts and the broken files.
    long_after / window / stride (seconds; long_after="off": no windows): prvr.search.windows, its
    defaults for a new index, the index's own settings when extending one and none is given.
    folder_fps: the videos are frame folders (one folder of images per video, image k shown at
    k / folder_fps: TVR's released frames); each entry records it."""
    if dtype not in DTYPES or workers < 1 or shard_size < 1 or (folder_fps is not None and not folder_fps > 0):
        raise PrvrError(f"index: dtype must be one of {DTYPES}, workers and shard_size >= 1, folder_fps > 0 "
                        f"(got {dtype!r}, {workers}, {shard_size}, {folder_fps})")
    paths = list_videos(videos, frame_folders=folder_fps is not None)
    folder = Path(out_index)
    if folder.exists() and not folder.is_dir():
        raise PrvrError(f"{folder}: exists and is not a folder")
    manifest = store.read_manifest(folder) if folder.is_dir() else None
    if clip_weights is None and manifest is not None:
        clip_weights = manifest["clip"]["weights"]  # extending an index: the CLIP it was built with
    encoder = SearchEncoder.load(model_path, clip_weights)
    windows = resolve_windows(encoder.cfg.frames, encoder.cfg.model.frame_tokens, long_after, window, stride,
                              (manifest or {}).get("windows"), extending=manifest is not None)
    wanted = {"format": store.format_for(windows), **encoder.describe(), "keys": list(encoder.video_keys()),
              "dtype": dtype, "windows": windows}
    if manifest is not None:
        store.check_same_encoder(folder, manifest, wanted)
    manifest = {**wanted, "videos": (manifest or {}).get("videos", {})}
    return _run(encoder, paths, folder, manifest, workers, shard_size, folder_fps)


def drop_removed(manifest: dict, paths: dict[str, Path]) -> list[str]:
    """Drop from the manifest the videos whose indexed file no longer exists and that this run does not
    index from elsewhere (an index may hold several folders: a video of another folder whose file is
    there stays); returns their ids. Their rows stay in their shards, unread."""
    gone = [vid for vid, entry in manifest["videos"].items() if vid not in paths and not Path(entry["file"]).exists()]
    for vid in gone:
        tqdm.write(f"prvr index: dropped {vid}: {manifest['videos'].pop(vid)['file']} no longer exists", file=sys.stderr)
    return gone


def _run(encoder: SearchEncoder, paths: dict[str, Path], folder: Path, manifest: dict, workers: int,
         shard_size: int, folder_fps: float | None) -> dict:
    counts = {"videos": len(paths), "indexed": 0, "unchanged": 0, "changed": 0,
              "removed": len(drop_removed(manifest, paths))}
    broken: dict[str, str] = {}
    pending: list[dict] = []
    moved = False  # an unchanged video found under another path: its entry names the new one
    for vid, path, result in tqdm(_prepared(encoder, paths, manifest["videos"], workers, manifest["windows"],
                                            folder_fps), total=len(paths),
                                  unit="video", desc=f"index {folder.name}"):
        if isinstance(result, str):
            if result == "unchanged":
                counts["unchanged"] += 1
                entry = manifest["videos"][vid]
                moved |= entry["file"] != str(path.resolve())
                entry["file"] = str(path.resolve())
            else:
                broken[str(path)] = result
                tqdm.write(f"prvr index: skipped {path}: {result}", file=sys.stderr)  # a line of its own
            continue
        counts["changed" if vid in manifest["videos"] else "indexed"] += 1
        pending.append(_encoded(encoder, vid, path, *result, manifest["windows"], folder_fps))
        if len(pending) >= shard_size or sum(len(item["tokens"]) for item in pending) >= SHARD_ROWS:
            _flush(folder, manifest, pending)
    _flush(folder, manifest, pending)
    if counts["removed"] or moved or not folder.joinpath(store.MANIFEST).exists():
        store.commit(folder, manifest)  # also: an index of broken or no videos still says what it is
    return {**counts, "broken": broken, "total_indexed": len(manifest["videos"])}


def _prepared(encoder: SearchEncoder, paths: dict[str, Path], known: dict, workers: int,
              windows: dict | None, folder_fps: float | None) -> Iterator[tuple]:
    """(id, path, "unchanged" | a reason it is broken | (sha256, (T, D) features, duration, long)) in id
    order, prepared up to 2 * workers videos ahead; a long video's frames at the windows' rate."""
    def prepare(vid: str, path: Path):
        try:
            sha = sha256_file(path)  # a frame folder: of its images' names and bytes
            if known.get(vid, {}).get("sha256") == sha and known[vid].get("folder_fps") == folder_fps:
                return "unchanged"
            duration = encoder.duration(path, folder_fps)
            long = is_long(duration, windows)
            return sha, encoder.frame_features(path, windows["fps"] if long else None, folder_fps), duration, long
        except VideoDecodeError as err:
            return _reason(err, path)
        except OSError as err:
            return f"cannot read ({err.strerror or type(err).__name__})"

    if workers == 1:
        yield from ((vid, path, prepare(vid, path)) for vid, path in paths.items())
        return
    with ThreadPoolExecutor(workers) as pool:
        queue: deque = deque()
        for vid, path in paths.items():
            queue.append((vid, path, pool.submit(prepare, vid, path)))
            if len(queue) > 2 * workers:
                vid0, path0, future = queue.popleft()
                yield vid0, path0, future.result()
        while queue:
            vid0, path0, future = queue.popleft()
            yield vid0, path0, future.result()


def _reason(err: Exception, path: Path) -> str:
    """The decoder's message without the file name it starts with."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[len(str(path)) + 2:] if text.startswith(f"{path}: ") else text


def _encoded(encoder: SearchEncoder, vid: str, path: Path, sha: str, feats: np.ndarray, duration: float,
             long: bool, windows: dict | None, folder_fps: float | None) -> dict:
    """One video's rows (one, or one per window of a long video): model outputs and token spans, and its
    manifest entry (a long video's lists its windows, [start, end] seconds, one row each)."""
    n_tokens, n = encoder.cfg.model.frame_tokens, len(feats)
    entry = {"file": str(path.resolve()), "sha256": sha, "duration": duration, "n_frames": int(n),
             **({"folder_fps": folder_fps} if folder_fps is not None else {})}
    if not long:
        spans = [token_spans(n, duration, n_tokens)]  # (Nf, 2)
        return {"id": vid, "tokens": encoder.encode_frame_sets([feats]), "spans": spans, "windows": [None],
                "entry": entry}
    starts = window_starts(duration, windows["window"], windows["stride"])  # (W,)
    frames = window_frames(n, duration, starts, windows["window"])  # (j0, j1) per window
    bounds = [[float(s), float(min(s + windows["window"], duration))] for s in starts]
    return {"id": vid, "tokens": encoder.encode_frame_sets([feats[j0:j1] for j0, j1 in frames]),
            "spans": [window_spans(j0, j1, duration / n, n_tokens) for j0, j1 in frames],
            "windows": bounds, "entry": {**entry, "windows": bounds}}


def _flush(folder: Path, manifest: dict, pending: list[dict]) -> None:
    """Write the pending videos' rows as a new shard and commit index.json naming them (a video's rows
    are consecutive: its entry names the first)."""
    if not pending:
        return
    folder.mkdir(parents=True, exist_ok=True)
    name = store.next_shard(folder)
    rows = [{"id": item["id"], "tokens": tokens, "spans": spans, "window": window}
            for item in pending for tokens, spans, window in zip(item["tokens"], item["spans"], item["windows"])]
    store.write_shard(folder / name, rows, manifest["dtype"])
    first = 0
    for item in pending:
        manifest["videos"][item["id"]] = {**item["entry"], "shard": name, "row": first}
        first += len(item["tokens"])
    store.commit(folder, manifest)
    pending.clear()
