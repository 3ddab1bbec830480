"""`prvr <stage>`: every pipeline stage without Snakemake, on the same config file.

    prvr corpus --config config/config.yaml --out results/demo
    prvr captions results/demo/annotations/train.jsonl results/demo/captions/train.caption.txt
    prvr pretrain-clip --config config/config.yaml --out results/demo/clip/tiny_clip.pt
    prvr benchmark-annotations --config config/datasets/tvr.yaml --out results/tvr   (real benchmarks)
    prvr video-list results/demo/annotations/{train,val,test}.jsonl --out videos.txt   (checked disjoint)
    prvr video-features --config ... --videos results/demo/videos --video-list videos.txt --shard 0 --out s0.h5
    prvr merge-features s0.h5 s1.h5 --out results/demo/features/video/test.h5   (a store per split)
    prvr text-features --config ... --captions test.caption.txt --out results/demo/features/text/test.h5
    prvr train --config ... --ablation config/ablations/baseline.yaml --seed 9527 --data results/demo --out run/
    prvr evaluate --model run/model.pt --data results/demo --split test --out run/metrics.json
    prvr table --row baseline run/metrics.json ... --out results/ablation.csv
    prvr collapse --model run/model.pt --data results/demo --split test --out run/collapse.json
    prvr tsne --model run/model.pt --data results/demo --split test --out results/figures/tsne.png
    (collapse / tsne without --model: the CLIP input features, the untrained reference)
    prvr clean-stale --results results [--dry-run]   (remove set-aside checkpoints.stale-N folders)
    prvr import-checkpoint --format ms_sl model.ckpt --out model.pt [--config base.yaml]   (a release's checkpoint)
    prvr check-config [--configfile my.yaml ...] [key=value ...]   (the workflow's checks, without Snakemake)
    prvr index my_videos/ --model run/model.pt --out my_index [--clip-weights tiny_clip.pt]   (search own videos)
        [--long-after 128 --window 16 --stride 8]   (long videos as overlapping windows; --long-after off)
        [--frame-folders 3]   (a folder of frame-image folders, shown at 3 fps: TVR's frames)
    prvr search my_index "a red circle spins" [-k 10] [--json] [--html hits.html] [--approx]

Errors from bad input print one line (`prvr: error: ...`) and exit with status 1.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prvr.allocator import keep_freed_memory
from prvr.config import load_config
from prvr.errors import PrvrError
from prvr.store.layout import text_store, video_store


def _cmd_check_config(a):
    """Snakemake reads each --configfile itself before prvr's checks run, and its YAML error does not
    name the file; this runs the same sources through prvr's reader and checks, one line on error."""
    from prvr.config_sources import Layer, check_workflow_config
    repo = Path(__file__).resolve().parents[1]
    from snakemake.cli import parse_config  # the --config values exactly as Snakemake reads them
    try:
        pairs = parse_config(a.pairs)
    except ValueError as err:
        raise PrvrError(f"--config: {err}") from None
    layers = [Layer.file(repo / "config" / "config.yaml"), *map(Layer.file, a.configfile),
              Layer("--config", pairs, text=True)]
    cfg, rows = check_workflow_config(layers, repo)
    print(f"config ok: dataset {cfg.dataset}, {len(rows)} trained rows, seeds {list(cfg.seeds)}")


def _cmd_corpus(a):
    from prvr.demo.synthetic import generate_corpus
    generate_corpus(load_config(a.config).corpus, Path(a.out))


def _cmd_captions(a):
    from prvr.stages import write_captions
    print(write_captions(Path(a.annotations), Path(a.out)))


def _cmd_pretrain_clip(a):
    from prvr.features.pretrain import pretrain_tiny_clip
    cfg = load_config(a.config)
    pretrain_tiny_clip(cfg.clip.pretrain, Path(a.out), model_name=cfg.clip.model)


def _cmd_video_features(a):
    from prvr.stages import extract_video_shard, shard_video_ids
    cfg = load_config(a.config)
    vids = shard_video_ids(Path(a.video_list), a.shard, cfg.frames.shard_size)
    extract_video_shard(cfg, Path(a.videos), vids, Path(a.weights) if a.weights else None, Path(a.out))


def _cmd_video_list(a):
    from prvr.stages import video_list
    print(video_list([Path(p) for p in a.annotations], Path(a.out)))


def _cmd_benchmark_annotations(a):
    from prvr.stages import benchmark_tables
    print(benchmark_tables(load_config(a.config), Path(a.out)))


def _cmd_merge_features(a):
    from prvr.store.feature_store import merge_stores
    merge_stores([Path(p) for p in a.shards], Path(a.out))


def _cmd_text_features(a):
    from prvr.stages import extract_text
    cfg = load_config(a.config)
    extract_text(cfg, [Path(p) for p in a.captions], Path(a.weights) if a.weights else None, Path(a.out))


def _cmd_train(a):
    from prvr.config_sources import ablation_config
    from prvr.stages import train_run
    from prvr.training.trainer import TrainData
    cfg = ablation_config(load_config(a.config), Path(a.ablation))
    d = Path(a.data)
    data = TrainData(d / "captions/train.caption.txt", d / "captions/val.caption.txt", video_store(d, "train"),
                     text_store(d, "train"), val_video_feats=video_store(d, "val"), val_text_feats=text_store(d, "val"))
    inputs = {"ablation": a.ablation, **{k: v for k, v in vars(data).items()}}
    print(train_run(cfg, a.seed, data, Path(a.out), inputs))


def _cmd_evaluate(a):
    from prvr.stages import evaluate_run
    d = Path(a.data)
    record = evaluate_run(Path(a.model), d / f"captions/{a.split}.caption.txt", video_store(d, a.split),
                          text_store(d, a.split), Path(a.out), split=a.split, device=a.device)
    print(record["metrics"])


def _analysis_args(a):
    """The positional inputs of stages.collapse_run / tsne_run for a data folder and split."""
    d = Path(a.data)
    labels = d / "annotations/event_labels.jsonl"
    return (Path(a.model) if a.model else None, load_config(a.config), a.split,
            d / f"annotations/{a.split}.jsonl", d / f"captions/{a.split}.caption.txt",
            video_store(d, a.split), text_store(d, a.split), labels if labels.exists() else None)


def _cmd_collapse(a):
    from prvr.stages import collapse_run
    print(collapse_run(*_analysis_args(a), Path(a.out))["metrics"])


def _cmd_tsne(a):
    from prvr.stages import tsne_run
    name = Path(a.model).parent.parent.name if a.model else "clip_input"
    print(tsne_run(*_analysis_args(a), Path(a.out), title=f"{name} ({a.split} split)"))


def _cmd_table(a):
    from prvr.reporting.tables import ablation_table, write_table
    files = {name: paths for name, *paths in a.row}
    write_table(ablation_table(files), Path(a.out), sources=files)


def _cmd_clean_stale(a):
    import shutil
    from prvr.training.checkpoint import stale_folders
    found = stale_folders(Path(a.results))
    for folder, size in found:
        reason = (folder / "STALE.txt").read_text().strip().splitlines()[0][:120]
        print(f"{'would remove' if a.dry_run else 'removing'} {folder} ({size / 1e6:.1f} MB): {reason}")
        if not a.dry_run:
            shutil.rmtree(folder)
    print(f"{len(found)} stale checkpoint folder(s), {sum(s for _, s in found) / 1e6:.1f} MB"
          f"{' (nothing removed: --dry-run)' if a.dry_run else ' removed'}")


def _cmd_import_checkpoint(a):
    from prvr.checkpoints import import_checkpoint
    done = import_checkpoint(a.format, a.file, a.out, a.config)
    unused = f"; not used at evaluation: {', '.join(done['not_used'])}" if done["not_used"] else ""
    print(f"wrote {done['out']}: prvr {done['model']} from {a.format} {a.file} (epoch {done['epoch']}, "
          f"{done['tensors']} tensors onto {done['prvr_tensors']}{unused})")


def _cmd_index(a):
    from prvr.search import index_videos
    done = index_videos(a.videos, a.model, a.out, clip_weights=a.clip_weights, workers=a.workers,
                        long_after=a.long_after, window=a.window, stride=a.stride, folder_fps=a.frame_folders)
    print(f"{a.out}: {done['indexed']} new, {done['changed']} changed, {done['unchanged']} unchanged, "
          f"{len(done['broken'])} broken of {done['videos']} videos, {done['removed']} removed (file gone); "
          f"{done['total_indexed']} in the index")


def _cmd_search(a):
    import json
    from prvr.search import search
    from prvr.search.approx import ApproxOptions
    approx = ApproxOptions(a.approx_factory, a.approx_tokens, a.nprobe) if a.approx else None
    hits = search(a.index, a.query, k=a.k, approx=approx, scan=a.scan)
    if a.html:
        from prvr.search import write_results_page
        print(f"wrote {write_results_page(hits, a.query, a.html)}")
    if a.json:
        print(json.dumps([hit.to_dict() for hit in hits], indent=2))
        return
    for hit in hits:
        window = f"  (window {hit.window[0]:.1f}-{hit.window[1]:.1f} s)" if hit.window else ""
        print(f"{hit.rank:3d}  {hit.video}  {hit.score:.4f}  {hit.start:.1f}-{hit.end:.1f} s{window}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prvr", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, fn, *args):
        p = sub.add_parser(name)
        for flags, kwargs in args:
            p.add_argument(*flags, **kwargs)
        p.set_defaults(fn=fn)

    config = (("--config",), {"default": "config/config.yaml"})
    out = (("--out",), {"required": True})
    weights = (("--weights",), {"default": None, "help": "open_clip tag or weights file (default: config "
                                                    "clip.pretrained; one of the two is required)"})
    add("corpus", _cmd_corpus, config, out)
    add("captions", _cmd_captions, (("annotations",), {}), (("out",), {}))
    add("pretrain-clip", _cmd_pretrain_clip, config, out)
    add("video-features", _cmd_video_features, config, out, weights, (("--videos",), {"required": True}),
        (("--video-list",), {"required": True, "help": "videos.txt (prvr video-list)"}),
        (("--shard",), {"type": int, "default": 0}))
    add("video-list", _cmd_video_list, out, (("annotations",), {"nargs": "+"}))
    add("benchmark-annotations", _cmd_benchmark_annotations, config, out)
    add("merge-features", _cmd_merge_features, (("shards",), {"nargs": "+"}), out)
    add("text-features", _cmd_text_features, config, out, weights, (("--captions",), {"nargs": "+", "required": True}))
    add("train", _cmd_train, config, out, (("--ablation",), {"default": "config/ablations/baseline.yaml"}),
        (("--seed",), {"type": int, "default": 9527}), (("--data",), {"default": "results/demo"}))
    add("evaluate", _cmd_evaluate, out, (("--model",), {"required": True}), (("--data",), {"default": "results/demo"}),
        (("--split",), {"default": "test"}), (("--device",), {"default": "cpu", "help": "cpu (default), cuda, ..."}))
    analysis = (config, out, (("--model",), {"default": None, "help": "model.pt (default: CLIP input features)"}),
                (("--data",), {"default": "results/demo"}), (("--split",), {"default": "test"}))
    add("collapse", _cmd_collapse, *analysis)
    add("tsne", _cmd_tsne, *analysis)
    add("table", _cmd_table, out, (("--row",), {"nargs": "+", "action": "append", "required": True,
                                                "metavar": ("NAME", "METRICS_JSON")}))
    add("check-config", _cmd_check_config, (("--configfile",), {"action": "append", "default": [], "metavar": "FILE",
                                                            "help": "a --configfile of the run (repeat for several)"}),
        (("pairs",), {"nargs": "*", "metavar": "KEY=VALUE", "help": "as Snakemake's --config pairs"}))
    add("import-checkpoint", _cmd_import_checkpoint, (("file",), {"help": "their best.ckpt / model.ckpt"}), out,
        (("--format",), {"required": True, "choices": ("msc", "gmmformer_v2", "gmmformer_v1", "ms_sl", "dl_dkd")}),
        (("--config",), {"default": None, "help": "base config for what their file does not say"}))
    add("index", _cmd_index, (("videos",), {"help": "a folder of videos or a list file (one path a line)"}),
        (("--model",), {"required": True}), (("--out",), {"required": True, "help": "the index folder"}),
        (("--clip-weights",), {"default": None, "help": "CLIP weights (default: the model's clip.pretrained)"}),
        (("--workers",), {"type": int, "default": 1}),
        (("--frame-folders",), {"type": float, "default": None, "metavar": "FPS",
                                "help": "the videos are folders of frame images shown at FPS (TVR's frames: 3)"}),
        (("--long-after",), {"default": None, "metavar": "SECONDS|off",
                             "help": "videos longer than this are indexed as windows (default: max_frames / fps; "
                                     "off: never; extending an index: its own)"}),
        (("--window",), {"type": float, "default": None, "metavar": "SECONDS",
                         "help": "window length (default: frame_tokens / fps)"}),
        (("--stride",), {"type": float, "default": None, "metavar": "SECONDS",
                         "help": "a new window every SECONDS (default: window / 2)"}))
    add("search", _cmd_search, (("index",), {}), (("query",), {}), (("-k",), {"type": int, "default": 10}),
        (("--json",), {"action": "store_true", "help": "print the hits as JSON"}),
        (("--html",), {"default": None, "metavar": "OUT.html", "help": "also write a page with thumbnails and moments"}),
        (("--approx",), {"action": "store_true", "help": "rank exactly among an approximate stage's candidates "
                                                         "(faiss; built once into INDEX/approx/)"}),
        (("--approx-factory",), {"default": None, "help": "faiss index factory (default: by the index's size)"}),
        (("--approx-tokens",), {"type": int, "default": 256, "help": "nearest tokens fetched per score branch"}),
        (("--nprobe",), {"type": int, "default": 32, "help": "IVF lists visited per query"}),
        (("--scan",), {"default": "auto", "metavar": "auto|int8|float16",
                       "help": "exact search's first pass over every token: int8 copy (+50%% memory, faster; "
                               "auto: where torch's int8 product is vectorised) or the float16 tokens"}))
    add("clean-stale", _cmd_clean_stale, (("--results",), {"default": "results"}),
        (("--dry-run",), {"action": "store_true", "help": "list them, remove nothing"}))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        keep_freed_memory()
        args.fn(args)
    except PrvrError as err:
        print(f"prvr: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
