"""Search on long videos: windows (prvr.search.windows) against resampling the whole video to
model.frame_tokens, at several lengths (issue 22 item 3).

    .venv/bin/python -m bench.bench_long_videos --model results/demo/runs/adaptive/seed1/model.pt \
        --clip-weights results/demo/clip/tiny_clip.pt --lengths 5 20 60 --videos 20 --out results/long_videos

Per length (minutes): `--videos` long videos, each generated demo test clips (the model's corpus
settings, another seed: clips the model never saw) played one after another until it lasts that long
(prvr.demo.long_videos); the long videos of a length use disjoint clips. Queries: every event caption
of every clip, its span moved into the long video. Each length's long videos are indexed twice with
prvr.search.index_videos: `windows` (the index's defaults, or --window / --stride) and `whole`
(--long-after off: the pipeline's own sampling, max_frames frames resampled to frame_tokens), and
measured with prvr.search.measure (the long videos of the length are the candidates): R@1, R@10 (a
caption's long video first / in the top ten), the moment in its own long video (mean IoU, hit@0.5:
IoU >= 0.5) and, with windows, the share of captions whose best window holds their event's middle.
And how ambiguous the captions are: the share whose event's labels (all a caption says: shape,
colour, motion, scene, size) describe an event of another long video too, or a second one of their own.

Writes OUT/long_videos.json (every number, the settings, timings and the machine) and
OUT/long_videos.png (the four measures against the length); prints a table. The clips and long
videos go to OUT/work (--work), reused when there (the indexes too with --reuse: measured again, their
first indexing time kept); --small: lengths 0.5 and 1 minute, 3 videos each (a check that it runs,
not a measurement).
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

from prvr.demo.long_videos import clip_frames_from, clips_needed, generate_clips, plan_long_videos, write_long_video
from prvr.io import atomic_path, write_json
from prvr.provenance import machine as provenance_machine
from prvr.search import Searcher, index_videos
from prvr.search.measure import measure
from prvr.training.model_file import model_from_saved, read_model_file

LABELS = ("shape", "colour", "motion", "scene", "size")  # an event's labels (prvr.demo.synthetic)
MEASURES = (("R@1", "R@1 (%)"), ("R@10", "R@10 (%)"), ("hit@0.5", "moment hit@0.5 (%)"),
            ("mean_iou", "moment mean IoU"))


def machine() -> str:
    """CPU model, cores and torch threads (prvr.provenance.machine)."""
    m = provenance_machine()
    return f"{m['cpu']}, {m['cpu_cores']} cores, torch {m['torch']} with {m['torch_threads']} threads"


def build_length(corpus, clips, clip_rows, seconds, minutes: float, count: int, work: Path) -> tuple[Path, list[dict]]:
    """The long videos of one length in work/long_<min>m_<count>/ and their shifted annotation rows."""
    folder = work / f"long_{minutes:g}m_{count}"
    rows_file = folder / "annotations.jsonl"
    if rows_file.exists():
        return folder, [json.loads(line) for line in rows_file.read_text().splitlines()]
    rows = []
    for k, plan in enumerate(plan_long_videos(seconds, minutes * 60, count)):
        vid = f"long_{minutes:g}m_{k:02d}"
        rows += write_long_video([clips[i] for i in plan], [clip_rows[clips[i].stem] for i in plan],
                                 folder / f"{vid}.mp4", vid, corpus.fps)
    with atomic_path(rows_file) as tmp:
        tmp.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))
    return folder, rows


def ambiguity(rows: list[dict], labels: dict[int, dict]) -> dict:
    """Shares (%) of captions whose event's labels (LABELS: all a caption says) also describe an event
    of another long video of the set, or another event of their own long video: events no text query
    can tell apart."""
    def key(row):
        return tuple(labels[row["desc_id"]][field] for field in LABELS)
    videos, counts = defaultdict(set), Counter()
    for row in rows:
        videos[key(row)].add(row["vid_name"])
        counts[(row["vid_name"], key(row))] += 1
    return {"in_another_video": 100 * float(np.mean([len(videos[key(r)] - {r["vid_name"]}) > 0 for r in rows])),
            "twice_in_own_video": 100 * float(np.mean([counts[(r["vid_name"], key(r))] > 1 for r in rows]))}


def run_variant(name: str, folder: Path, rows: list[dict], a, index_dir: Path) -> dict:
    """Index one length's long videos one way and measure search on them."""
    options = {"long_after": "off"} if name == "whole" else {"long_after": a.long_after, "window": a.window,
                                                             "stride": a.stride}
    timing = index_dir / "bench_index_seconds.json"
    if not (a.reuse and timing.exists()):
        shutil.rmtree(index_dir, ignore_errors=True)  # a fresh index: its time is the whole indexing
        start = time.perf_counter()
        index_videos(folder, a.model, index_dir, clip_weights=a.clip_weights, workers=a.workers, **options)
        write_json(timing, {"seconds": time.perf_counter() - start})
    index_videos(folder, a.model, index_dir, clip_weights=a.clip_weights, **options)  # complete: nothing to do
    seconds = json.loads(timing.read_text())["seconds"]
    searcher = Searcher(index_dir)
    start = time.perf_counter()
    got = measure(searcher, rows)
    return {"R@1": got["R@1"], "R@10": got["R@10"], "hit@0.5": 100 * got["ratio 0.5"]["hit@0.5"],
            "mean_iou": got["ratio 0.5"]["mean_iou"], "queries": got["queries"], "videos": got["videos"],
            "in_best_window": 100 * got["in_best_window"] if "in_best_window" in got else None,
            "rows": int(len(searcher.index.row_video)), "windows": searcher.index.manifest.get("windows"),
            "index_seconds": seconds, "measure_seconds": time.perf_counter() - start,
            "centred_baseline": {"hit@0.5": 100 * got["baseline"]["hit@0.5"], "mean_iou": got["baseline"]["mean_iou"]}}


def plot(results: dict, out: Path) -> None:
    """The four measures against the length, one line per variant, chance where it has one."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator
    lengths = sorted(results, key=float)
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.4))
    for ax, (key, label) in zip(axes, MEASURES):
        for variant, style in (("windows", "o-"), ("whole", "s--")):
            ax.plot([float(n) for n in lengths], [results[n][variant][key] for n in lengths], style, label=variant)
        if key in ("R@1", "R@10"):
            k = int(key[2:])
            videos = [results[n]["whole"]["videos"] for n in lengths]
            ax.plot([float(n) for n in lengths], [100 * min(k, v) / v for v in videos], ":", color="grey",
                    label="chance")
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks([float(n) for n in lengths], [f"{float(n):g}" for n in lengths])
        ax.set_ylim(0, 1.02 if key == "mean_iou" else 102)
        ax.set_xlabel("video length (min)")
        ax.set_title(label)
    axes[0].legend()
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


HEADER = ("| length | videos | queries | way | rows | R@1 | R@10 | moment hit@0.5 | mean IoU | in best window "
          "| index s |\n|---|---|---|---|---|---|---|---|---|---|---|")


def table_rows(minutes: str, result: dict) -> str:
    """The table's lines of one length (markdown, as docs/search.md shows them)."""
    lines = []
    for variant in ("windows", "whole"):
        r = result[variant]
        lines.append(f"| {float(minutes):g} min | {r['videos']} | {r['queries']} | {variant} | {r['rows']} | "
                     f"{r['R@1']:.1f} | {r['R@10']:.1f} | {r['hit@0.5']:.1f} | {r['mean_iou']:.3f} | "
                     f"{'-' if r['in_best_window'] is None else format(r['in_best_window'], '.1f')} | "
                     f"{r['index_seconds']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a trained model.pt of the demo")
    parser.add_argument("--clip-weights", default=None, help="its CLIP weights (the demo's tiny_clip.pt)")
    parser.add_argument("--lengths", type=float, nargs="+", default=[5, 20, 60], help="minutes")
    parser.add_argument("--videos", type=int, default=20, help="long videos per length")
    parser.add_argument("--seed", type=int, default=7, help="corpus seed of the clips (the demo trains on 0)")
    parser.add_argument("--long-after", type=float, default=None, help="seconds (default: the index's)")
    parser.add_argument("--window", type=float, default=None, help="seconds (default: the index's)")
    parser.add_argument("--stride", type=float, default=None, help="seconds (default: the index's)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", required=True)
    parser.add_argument("--work", default=None, help="clips, long videos and indexes (default: OUT/work)")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the indexes of an earlier run in --work (and their indexing time): measure again")
    parser.add_argument("--small", action="store_true", help="lengths 0.5 and 1 min, 3 videos: a check that it runs")
    a = parser.parse_args(argv)
    if a.small:
        a.lengths, a.videos, a.long_after = [0.5, 1.0], 3, a.long_after or 20.0
    out = Path(a.out)
    work = Path(a.work) if a.work else out / "work"
    corpus = replace(model_from_saved(read_model_file(Path(a.model)), a.model, device="cpu")[1].corpus, seed=a.seed)
    n_clips = clips_needed(corpus, max(a.lengths) * 60, a.videos)
    start = time.perf_counter()
    clips, clip_rows = generate_clips(corpus, n_clips, work / "clips")
    seconds = [f / corpus.fps for f in clip_frames_from(corpus, 0, n_clips)]
    labels = {row["desc_id"]: row for row in map(json.loads, (work / "clips/annotations/event_labels.jsonl")
                                                      .read_text().splitlines())}
    timings = {"clips": time.perf_counter() - start}
    results = {}
    print(HEADER, flush=True)
    for minutes in a.lengths:
        start = time.perf_counter()
        folder, rows = build_length(corpus, clips, clip_rows, seconds, minutes, a.videos, work)
        timings[f"build {minutes:g} min"] = time.perf_counter() - start
        result = {v: run_variant(v, folder, rows, a, work / f"index_{minutes:g}m_{a.videos}_{v}")
                  for v in ("windows", "whole")}
        results[f"{minutes:g}"] = {**result, "ambiguity": ambiguity(rows, labels)}
        print(table_rows(f"{minutes:g}", result), flush=True)
    report = {"machine": machine(), "model": str(Path(a.model).resolve()), "corpus": vars(corpus),
              "clips": n_clips, "timings_s": timings, "results": results, "small": a.small,
              "reused": a.reuse}  # --reuse: clips, videos and indexes were there (index_seconds: their first run)
    for minutes, result in results.items():
        print(f"{minutes} min: {result['ambiguity']['in_another_video']:.1f} % of the captions describe an event "
              f"that another long video has too, {result['ambiguity']['twice_in_own_video']:.1f} % one that their "
              f"own has twice or more")
    write_json(out / "long_videos.json", report)
    plot(results, out / "long_videos.png")
    print(f"wrote {out / 'long_videos.json'} and {out / 'long_videos.png'}")
    return report


if __name__ == "__main__":
    main()
