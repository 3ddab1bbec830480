"""How well search finds a caption's video and moment, on an annotated split (TVR-style JSONL:
vid_name, desc, ts [start, end] seconds, duration), against a centred fixed-length baseline.

    .venv/bin/python -m prvr.search.measure INDEX results/demo/annotations/test.jsonl [--ratio 0.5 ...]

Candidates are the split's own videos (the index may hold more); R@1 / R@10 count a caption whose
video ranks first / in the top ten (ties by video id, as search; a long video's score is the max over
its windows). Moments are predicted for each caption in its own video (prvr.search.moments.best_moment;
in a long video, in its best window for the caption, as search does) and compared with the annotated span:
mean IoU and hit@0.5 (with windows on, also `in_best_window`: the share of captions whose own video's
best window holds the middle of their annotated span), beside the baseline that puts a window of the
split's mean annotated length at the centre of every video (prvr.search.moments.centred_windows).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from prvr.errors import PrvrError
from prvr.sources.annotations import read_tvr_jsonl
from prvr.search.moments import agreement, best_moment, centred_windows
from prvr.search.searcher import Searcher, ranking

BATCH = 256  # queries encoded at a time


def read_annotations(path: str | Path) -> list[dict]:
    """The rows of a TVR-layout annotation file (the pipeline's annotations/<split>.jsonl), read and
    checked by the pipeline's own reader (one-line errors naming file and line)."""
    return [{"vid_name": q.vid, "desc": q.desc, "ts": [q.start, q.end]}
            for q in read_tvr_jsonl(path, bad_spans="keep")]  # spans were checked when the table was made


def measure(searcher: Searcher, rows: list[dict], ratios: tuple[float, ...] = (0.5,)) -> dict:
    """R@1, R@10, and per ratio the moment agreement, with the baseline's, over the annotated rows."""
    ids = searcher.index.ids
    position = {vid: i for i, vid in enumerate(ids)}
    missing = sorted({r["vid_name"] for r in rows} - set(position))
    if missing:
        raise PrvrError(f"{len(missing)} annotated videos are not in the index (e.g. {missing[0]})")
    columns = sorted({position[r["vid_name"]] for r in rows})  # the split's videos
    split_ids = [ids[c] for c in columns]
    ranks, sims, moment_rows = [], [], []
    for start in range(0, len(rows), BATCH):
        batch = rows[start:start + BATCH]
        encoded = searcher.encode([r["desc"] for r in batch])
        video_scores, best_rows = searcher.video_scores(searcher.row_scores(encoded))  # (B, V) each
        scores = video_scores.numpy()[:, columns]  # (B, V_split)
        own = [int(best_rows[i, position[row["vid_name"]]]) for i, row in enumerate(batch)]  # own video's best row
        frame_sims = searcher.frame_similarities(encoded, own)  # (B, B, Nf)
        for i, (row, score) in enumerate(zip(batch, scores)):
            order = [split_ids[j] for j in ranking(score, split_ids)]
            ranks.append(order.index(row["vid_name"]) + 1)
            sims.append(frame_sims[i, i])
        moment_rows += own
    ranks = np.array(ranks)
    truth = np.array([r["ts"] for r in rows], dtype=np.float64)  # (Q, 2)
    durations = np.array([searcher.index.durations[position[r["vid_name"]]] for r in rows])
    out = {"queries": len(rows), "videos": len(columns), "R@1": float((ranks <= 1).mean() * 100),
           "R@10": float((ranks <= 10).mean() * 100), "ties": "by video id",
           "baseline": agreement(centred_windows(durations, float((truth[:, 1] - truth[:, 0]).mean())), truth)}
    if searcher.index.manifest.get("windows"):  # the window each moment is read from holds the caption's middle
        window = searcher.index.row_window[moment_rows]  # (Q, 2)
        middle = truth.mean(axis=1)
        out["in_best_window"] = float(((window[:, 0] <= middle) & (middle <= window[:, 1])).mean())
    for ratio in ratios:
        pred = np.array([best_moment(s, searcher.index.spans[r], ratio) for s, r in zip(sims, moment_rows)])
        out[f"ratio {ratio:g}"] = agreement(pred, truth)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("index")
    parser.add_argument("annotations")
    parser.add_argument("--ratio", type=float, nargs="+", default=[0.5])
    parser.add_argument("--clip-weights", default=None)
    a = parser.parse_args(argv)
    try:
        result = measure(Searcher(a.index, a.clip_weights), read_annotations(a.annotations), tuple(a.ratio))
    except PrvrError as err:
        raise SystemExit(f"prvr.search.measure: error: {err}") from None
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
