"""The pipeline's stages as plain functions of (config, paths): what the CLI and the Snakemake
scripts both call, so every stage runs without Snakemake too (`prvr --help`).

Stage order: corpus -> captions -> pretrain_clip -> video_shard features -> merge -> text features
-> train -> evaluate -> ablation table.
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path

from prvr.config import Config, query_dim
from prvr.errors import PrvrError
from prvr.io import write_json


def shard_video_ids(video_list: Path, shard: int, shard_size: int) -> list[str]:
    """Shard `shard` of the dataset's video list (videos.txt, sorted), in pieces of shard_size."""
    from prvr.sources.benchmarks import read_video_list
    vids = read_video_list(video_list)
    n_shards = math.ceil(len(vids) / shard_size)
    if not 0 <= shard < n_shards:
        raise PrvrError(f"shard {shard} out of range: {len(vids)} videos make {n_shards} shards of {shard_size}")
    return vids[shard * shard_size:(shard + 1) * shard_size]


def sources_fingerprint_of_list(cfg: Config, videos_dir: Path, video_list: Path) -> str:
    """The fingerprint of every listed video's source now (prvr.video.video_files.sources_fingerprint):
    a params value of the workflow's merge, so a replaced or deleted video re-extracts the features."""
    from prvr.sources.benchmarks import read_video_list
    from prvr.video.video_files import sources_fingerprint
    return sources_fingerprint(videos_dir, read_video_list(video_list), folders=cfg.data.videos == "frame_folders")


def _missing_videos(missing_tsv: Path | None) -> set[str]:
    """The video ids listed in missing_videos.tsv (could not be fetched); none without the file."""
    if missing_tsv is None:
        return set()
    from prvr.sources.youtube import read_missing_tsv
    return set(read_missing_tsv(missing_tsv))


def video_list(annotation_files: list[Path], out: Path, missing_tsv: Path | None = None,
               listed: list[Path] | None = None) -> dict:
    """A video list from the `listed` annotation files (default: all), the files checked to share no
    video, without the videos listed in missing_tsv (could not be fetched)."""
    from prvr.sources.benchmarks import write_video_list
    return write_video_list(annotation_files, out, _missing_videos(missing_tsv), listed=listed)


def benchmark_tables(cfg: Config, out_dir: Path, splits: tuple[str, ...] | None = None) -> dict:
    """The benchmark's own annotation files -> annotations/{split}.jsonl of `splits` (default: train, val
    and test; prvr.sources.benchmarks)."""
    from prvr.sources.benchmarks import SPLITS, write_benchmark_tables
    return write_benchmark_tables(cfg.data, cfg.eval.selection, out_dir, splits or SPLITS)


def write_captions(annotation_file: Path, out_file: Path, missing_tsv: Path | None = None) -> dict:
    """TVR-layout jsonl -> MS-SL caption file, without the queries of videos that could not be fetched
    (missing_tsv); returns {"queries": written, "queries_without_video": left out}."""
    from prvr.sources.annotations import read_tvr_jsonl
    from prvr.store.splits import write_caption_txt
    queries = read_tvr_jsonl(annotation_file, bad_spans="keep")  # checked when the table was made
    missing = _missing_videos(missing_tsv)
    kept = [q for q in queries if q.vid not in missing]
    write_caption_txt(kept, out_file)
    return {"queries": len(kept), "queries_without_video": len(queries) - len(kept)}


def fetch_archive(cfg: Config, done: Path) -> dict:
    """Download data.archive_url (resumable, data.archive_sha256 checked) beside data.video_dir and
    extract its videos there; `done` records what was extracted."""
    from prvr.sources.archives import extract_archive
    from prvr.sources.download import download_file
    from prvr.io import write_json
    video_dir = Path(cfg.data.video_dir)
    archive = video_dir.parent / cfg.data.archive_url.rstrip("/").rsplit("/", 1)[-1]
    download_file(cfg.data.archive_url, archive, sha256=cfg.data.archive_sha256)
    videos = extract_archive(archive, video_dir, members_under=cfg.data.archive_members_under)
    summary = {"archive": str(archive), "video_dir": str(video_dir), "videos": len(videos)}
    write_json(done, summary)
    return summary


def fetch_youtube_videos(cfg: Config, annotation_files: list[Path], missing_tsv: Path, done: Path) -> dict:
    """Every video id of the given annotation files (the workflow: one split's) fetched from YouTube into
    data.video_dir; the ones that cannot be fetched are listed with their reason in missing_tsv (the
    DAG goes on without them)."""
    from prvr.sources.annotations import read_tvr_jsonl
    from prvr.sources.youtube import fetch_youtube
    from prvr.io import write_json
    vids = sorted({q.vid for path in annotation_files for q in read_tvr_jsonl(path, bad_spans="keep")})
    summary = fetch_youtube(vids, Path(cfg.data.video_dir), missing_tsv, workers=cfg.data.download_workers)
    write_json(done, summary)
    return summary


def import_released_features(cfg: Config, caption_files: dict[str, Path], video_out: Path, text_out: Path) -> dict:
    """The authors' released HDF5 features, validated against the given caption files (the workflow: one
    split's; ids present, dimensions, finite values: the first bad id named) and written in this
    pipeline's layout."""
    from prvr.sources.released import import_released
    d = cfg.data
    return import_released(d.released_video_h5, d.released_text_h5, caption_files, video_out, text_out,
                            video_dim=cfg.model.input_dim, text_dim=query_dim(cfg.model),
                            video_prefix=d.released_video_prefix)


def _encoder(cfg: Config, weights: Path | None):
    from prvr.features.clip import load_clip
    pretrained = str(weights) if weights is not None else cfg.clip.pretrained
    return load_clip(cfg.clip.model, pretrained, device=cfg.clip.device, batch_size=cfg.clip.batch_size)


def extract_video_shard(cfg: Config, videos_dir: Path, vids: list[str], weights: Path | None, out: Path) -> None:
    """Decode and encode one shard of videos into an HDF5 shard."""
    from prvr.video.video_files import frame_folders, video_files
    from prvr.features.extract import extract_video_features
    if cfg.data.videos == "frame_folders":  # one folder of images per video, shown at data.folder_fps
        paths = frame_folders(videos_dir, vids)
        extract_video_features(paths, _encoder(cfg, weights), cfg.frames, out, folder_fps=cfg.data.folder_fps)
    else:
        paths = video_files(videos_dir, vids)  # exact names: an id is never a glob pattern
        extract_video_features(paths, _encoder(cfg, weights), cfg.frames, out)


def extract_text(cfg: Config, caption_files: list[Path], weights: Path | None, out: Path) -> None:
    """Token features of every caption of every split into one HDF5."""
    from prvr.store.splits import read_caption_txt
    from prvr.features.extract import extract_text_features
    captions = {cid: text for path in caption_files for cid, text in read_caption_txt(path)}
    extract_text_features(captions, _encoder(cfg, weights), out)


def train_run(cfg: Config, seed: int, data, out_dir: Path, inputs: dict) -> dict:
    """Train one (configuration, seed) and write provenance.json beside model.pt."""
    from prvr.provenance import code_version, write_provenance
    from prvr.training.trainer import train
    code = code_version()  # the code this run starts with
    summary = train(cfg, seed, data, out_dir)
    write_provenance(Path(out_dir) / "provenance.json", cfg, seed, inputs, {"training": summary}, code)
    return summary


def split_dataset(captions: Path, video_feats: Path, text_feats: Path, model_cfg):
    """PRVRDataset.for_model of a split, opened once per process while its three files stay the same
    (path, size, modification time and inode): the evaluate job reads its test split from the stores
    once for every seed and for the collapse diagnostics, not once per call (17.6 s a time at the TVR
    test size). The datasets are read-only to their users."""
    try:
        keys = tuple(_file_key(Path(p)) for p in (captions, video_feats, text_feats))
    except OSError:  # a missing file: the dataset's own one-line error
        from prvr.data.dataset import PRVRDataset
        return PRVRDataset.for_model(captions, video_feats, text_feats, model_cfg)
    return _opened_split(*keys, model_cfg.frame_tokens, model_cfg.max_query_len)


def _file_key(path: Path) -> tuple:
    st = os.stat(path)
    return str(path), st.st_size, st.st_mtime_ns, st.st_ino


@functools.lru_cache(maxsize=2)
def _opened_split(captions: tuple, video_feats: tuple, text_feats: tuple, frame_tokens: int, max_query_len: int):
    from prvr.data.dataset import PRVRDataset
    return PRVRDataset(captions[0], video_feats[0], text_feats[0], frame_tokens, max_query_len=max_query_len)


RELEASE_SELECTION = "the release's own (its file does not say on which split)"


@dataclass(frozen=True)
class CollapseOutput:
    """What evaluate_run needs to write collapse.json from the encodings it evaluates (analysis.split
    being the evaluated split): that split's annotation file, the demo's event labels (or None), and
    where collapse.json goes."""
    annotations: Path
    labels: Path | None
    out: Path


def evaluate_run(model_path: Path, captions: Path, video_feats: Path, text_feats: Path, out: Path,
                 split: str = "test", inputs: dict | None = None, device: str = "cpu",
                 coverage: Path | None = None, cache: Path | None = None,
                 collapse: CollapseOutput | None = None) -> dict:
    """Evaluate model.pt on a split; metrics JSON carries its own provenance block, the tie rule
    (the model's config eval.ties) and the number of queries whose relevant video had tied candidates.
    device: where to run it (the workflow's eval.device), whatever device the model was trained on.
    coverage: the caption rule's counts; its queries_without_video (videos that could not be fetched)
    are recorded, so every table can say how many of the split's queries were not evaluated.
    cache: the dataset's feature cache (data.feature_cache) to read the split from.
    collapse: also write the collapse diagnostics of the very encodings evaluated (one encoding of
    the split: prvr.evaluation.analysis.evaluate_and_diagnose) to collapse.out."""
    from prvr.data.dataset import PRVRDataset
    from prvr.provenance import provenance
    from prvr.training.model_file import model_from_saved, read_model_file
    saved = read_model_file(model_path)
    model, cfg = model_from_saved(saved, str(model_path), device)
    if cache is not None:
        from prvr.store.feature_cache import open_cache
        opened = open_cache(cache, [captions], video_feats, text_feats, cfg.model.frame_tokens, cfg.model.max_query_len)
        dataset = PRVRDataset.from_cache(opened, captions, cfg.model)
        inputs = {**(inputs or {}), "feature_cache": cache}
    else:
        dataset = split_dataset(captions, video_feats, text_feats, cfg.model)
    metrics, diagnostics = _evaluate(model_path, model, cfg, dataset, video_feats, text_feats, device, collapse)
    seed = int(saved["seed"]) if saved["seed"] is not None else None  # None: an imported release checkpoint
    imported = saved.get("imported_from")
    import json
    left_out = json.loads(Path(coverage).read_text())["queries_without_video"] if coverage else 0
    inputs = {"model": model_path, "captions": captions, "video_feats": video_feats, "text_feats": text_feats,
              **(inputs or {})}
    record = {"split": split, "n_queries": len(dataset.index.caption_ids), "n_videos": len(dataset),
              "metrics": metrics, "tie_rule": cfg.eval.ties, "queries_with_ties": metrics["queries_with_ties"],
              "selection": RELEASE_SELECTION if imported else cfg.eval.selection, "queries_without_video": left_out,
              **({"imported_from": imported} if imported else {}), "provenance": provenance(cfg, seed, inputs)}
    write_json(out, record)
    if collapse is not None:
        inputs = {**inputs, "annotations": collapse.annotations,
                  **({"event_labels": collapse.labels} if collapse.labels else {})}
        source = "the feature cache" if cache is not None else "the feature stores"
        write_json(collapse.out, _collapse_record(split, dataset, diagnostics, provenance(cfg, seed, inputs),
                                                  f"trained model: the encodings of metrics.json (eval.precision "
                                                  f"{cfg.eval.precision}, {source})"))
    return record


def _evaluate(model_path: Path, model, cfg: Config, dataset, video_feats: Path, text_feats: Path, device: str,
              collapse: CollapseOutput | None) -> tuple[dict, dict | None]:
    """(metrics, collapse diagnostics or None) of evaluate_run, its errors one line naming the files."""
    from prvr.evaluation.analysis import AnalysisError, evaluate_and_diagnose, moments_from_files
    from prvr.evaluation.evaluate import evaluate_split
    from prvr.models import ModelInputError
    try:
        if collapse is None:
            return evaluate_split(model, dataset, cfg.eval, device), None
        moments = moments_from_files(dataset.index, collapse.annotations, video_feats, cfg.model.frame_tokens,
                                     collapse.labels)
        return evaluate_and_diagnose(model, dataset, cfg.eval, moments, device)
    except ModelInputError as err:  # features of another dimension or length than the model was trained on
        raise PrvrError(f"{model_path} does not fit {video_feats} / {text_feats}: {err}") from None
    except AnalysisError as err:  # e.g. a zero or non-finite embedding
        raise PrvrError(f"{collapse.out}: collapse analysis of {model_path} failed: {err}") from None


def _collapse_record(split: str, dataset, diagnostics: dict, provenance_block: dict, embeddings: str) -> dict:
    """collapse.json: the split's size, the diagnostics, what they were computed on, provenance."""
    return {"split": split, "n_queries": len(dataset.index.caption_ids), "n_videos": len(dataset),
            "metrics": diagnostics, "embeddings": embeddings, "provenance": provenance_block}


def _analysis_inputs(model_path: Path | None, cfg: Config, annotation_file: Path, captions: Path,
                     video_feats: Path, text_feats: Path, labels_file: Path | None):
    """(model or None, its config, its seed or None, the split's dataset, its SplitMoments); the model
    is put on the workflow config's eval.device."""
    from prvr.evaluation.analysis import moments_from_files
    from prvr.training.model_file import model_from_saved, read_model_file
    model, seed = None, None
    if model_path is not None:
        saved = read_model_file(model_path)
        model, cfg = model_from_saved(saved, str(model_path), cfg.eval.device)
        seed = int(saved["seed"])
    dataset = split_dataset(captions, video_feats, text_feats, cfg.model)
    moments = moments_from_files(dataset.index, annotation_file, video_feats, cfg.model.frame_tokens, labels_file)
    return model, cfg, seed, dataset, moments


def collapse_run(model_path: Path | None, cfg: Config, split: str, annotation_file: Path, captions: Path,
                 video_feats: Path, text_feats: Path, labels_file: Path | None, out: Path) -> dict:
    """Collapse metrics of model.pt (None: of the CLIP input features) on one split, with provenance:
    the model encodes the split from the stores at its eval.precision (the evaluate job shares its
    own encodings instead where analysis.split is the evaluated split: evaluate_run's collapse)."""
    from prvr.evaluation.analysis import analyse
    from prvr.provenance import provenance
    device = cfg.eval.device  # the workflow's, not the one saved in model.pt
    model, cfg, seed, dataset, moments = _analysis_inputs(model_path, cfg, annotation_file, captions,
                                                          video_feats, text_feats, labels_file)
    try:
        metrics = analyse(model, dataset, moments, cfg.eval.batch_size, device, cfg.eval.precision)
    except ValueError as err:  # e.g. a zero or non-finite embedding
        raise PrvrError(f"{out}: collapse analysis of {model_path or video_feats} failed: {err}") from None
    inputs = {"annotations": annotation_file, "captions": captions, "video_feats": video_feats,
              "text_feats": text_feats, **({"model": model_path} if model_path else {}),
              **({"event_labels": labels_file} if labels_file else {})}
    embeddings = (f"trained model (eval.precision {cfg.eval.precision}, the feature stores)" if model_path
                  else "CLIP input features (no training)")
    record = _collapse_record(split, dataset, metrics, provenance(cfg, seed, inputs), embeddings)
    write_json(out, record)
    return record


def _tsne_points(model_path: Path | None, cfg: Config, annotation_file: Path, captions: Path, video_feats: Path,
                 text_feats: Path, labels_file: Path | None, chosen: list[str] | None = None):
    """(figure points, video ids) of one model (None: the CLIP input features) on the `chosen` videos
    (default: the `analysis.tsne_videos` videos with the most events), embedded on cfg.eval.device."""
    from prvr.evaluation.analysis import figure_points, split_embeddings
    from prvr.reporting.figures import pick_videos
    analysis, device = cfg.analysis, cfg.eval.device  # the workflow's settings, not those saved in model.pt
    model, model_cfg, _, dataset, moments = _analysis_inputs(model_path, cfg, annotation_file, captions,
                                                             video_feats, text_feats, labels_file)
    index = dataset.index
    chosen = chosen or pick_videos({v: len(index.captions[v]) for v in index.videos}, analysis.tsne_videos)
    emb = split_embeddings(model, dataset, model_cfg.eval.batch_size, device)
    return figure_points(emb, moments, [index.videos.index(v) for v in chosen]), chosen


def tsne_run(model_path: Path | None, cfg: Config, split: str, annotation_file: Path, captions: Path,
             video_feats: Path, text_feats: Path, labels_file: Path | None, out: Path, title: str) -> list[str]:
    """t-SNE figure of the `analysis.tsne_videos` videos with the most events; returns their ids."""
    from prvr.reporting.figures import collapse_figure
    points, chosen = _tsne_points(model_path, cfg, annotation_file, captions, video_feats, text_feats, labels_file)
    try:
        collapse_figure(**points, out_path=out, title=title, seed=cfg.analysis.tsne_seed, video_names=chosen)
    except ValueError as err:  # e.g. too few captions for t-SNE with a small analysis.tsne_videos
        raise PrvrError(f"{out}: cannot draw the t-SNE figure of {', '.join(chosen)}: {err}") from None
    return chosen


def tsne_compare_run(model_paths: dict[str, Path], cfg: Config, split: str, annotation_file: Path,
                     captions: Path, video_feats: Path, text_feats: Path, labels_file: Path | None,
                     out: Path, title: str) -> list[str]:
    """The paper's t-SNE figure: several trained models (name -> model.pt; e.g. the baseline and the
    full method) side by side on the same `analysis.tsne_videos` videos; returns their ids."""
    from prvr.reporting.figures import compare_figure
    points, chosen = {}, None
    for name, model_path in model_paths.items():
        points[name], chosen = _tsne_points(Path(model_path), cfg, annotation_file, captions, video_feats,
                                            text_feats, labels_file, chosen)
    try:
        compare_figure(points, out, title, seed=cfg.analysis.tsne_seed, video_names=chosen)
    except ValueError as err:  # e.g. too few captions for t-SNE with a small analysis.tsne_videos
        raise PrvrError(f"{out}: cannot draw the t-SNE figure of {', '.join(chosen)}: {err}") from None
    return chosen
