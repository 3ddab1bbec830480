"""Diagnostic: which event attributes do the demo's frozen CLIP features encode? (linear probes)

    .venv/bin/python -m bench.probe_clip_attributes [--data results/demo] [--config config/config.yaml]

Needs a built demo (`snakemake results/demo/features/{text,video}/{train,test}.h5`). For every
event of the train and test splits: the video side = mean of the CLIP frame features inside the event
(resampled as for training), the text side = the caption's CLIP sentence vector (end-of-text token).
A logistic regression per attribute (shape, motion, colour, scene; the hidden event labels) is fitted
on train events and scored on test events. Prints a markdown table of test accuracy against the
majority-class rate: an attribute at the majority rate is invisible to the features.

A mean of frame features cannot show motion, so a second video probe sees the event as a sequence:
its first, middle and last inside frame tokens (normalised), last - first, middle - first and their
standard deviation over the event, concatenated ("video seq."): motion is visible there when the
frame features carry position, size, angle and visibility. The text probe cannot beat the share of
captions that name the attribute, printed as "named".

Below the table, the corpus itself (test split): how much of its video a caption's moment covers,
and in how many videos a caption's shape, colour, motion and scene occur somewhere ("as a bag",
what whole-video matching sees) against in one event (what moment matching sees).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from prvr.config import load_config
from prvr.sources.annotations import read_tvr_jsonl
from prvr.demo.vocabulary import COLOURS, MOTIONS, SCENES, SHAPES
from prvr.evaluation.analysis import _normalise, event_embeddings, event_labels, split_embeddings
from prvr.stages import _analysis_inputs
from prvr.store.layout import text_store, video_store

ATTRIBUTES = ("shape", "motion", "colour", "scene")


# surface forms that name each attribute's value in a caption (motion: its verb and gerund phrases)
SURFACE = {"shape": dict(SHAPES), "colour": {k: v[1] for k, v in COLOURS.items()},
           "scene": {k: v[1] for k, v in SCENES.items()},
           "motion": {k: tuple(w for pair in v for w in pair) for k, v in MOTIONS.items()}}


def sequence_features(frame_tokens: np.ndarray, moments, keep: np.ndarray) -> np.ndarray:
    """(E, 6 D): first, middle, last inside token, last - first, middle - first, std over the event."""
    rows = []
    for q in keep:
        tokens = _normalise(frame_tokens[moments.query_video[q]][moments.inside[q]])  # (n, D)
        first, middle, last = tokens[0], tokens[len(tokens) // 2], tokens[-1]
        rows.append(np.concatenate([first, middle, last, last - first, middle - first, tokens.std(axis=0)]))
    return np.stack(rows)


def names(caption: str, attr: str, value: str) -> bool:
    """Does the caption name this value of the attribute (any surface form)?"""
    text = f" {caption.lower().rstrip('.').replace(',', ' ')} "
    return any(f" {form} " in text for form in SURFACE[attr][value])


def split_events(cfg, data: Path, split: str) -> dict:
    """A split's events: video-side mean (E, D) and sequence (E, 6 D), text-side (E, D) embeddings,
    labels {attribute: (E,)}, captions, and per caption (all of the split's) its video and moment
    fraction."""
    annotations, labels_file = data / f"annotations/{split}.jsonl", data / "annotations/event_labels.jsonl"
    _, _, _, dataset, moments = _analysis_inputs(None, cfg, annotations, data / f"captions/{split}.caption.txt",
                                                 video_store(data, split), text_store(data, split), labels_file)
    rows = read_tvr_jsonl(annotations)
    labels = event_labels(rows, labels_file)
    emb = split_embeddings(None, dataset)
    video, keep = event_embeddings(emb["frame_tokens"], moments)
    ids = [dataset.index.caption_ids[i] for i in keep]
    captions = {q.caption_id: q.desc for q in rows}
    return {"video": video, "sequence": sequence_features(emb["frame_tokens"], moments, keep),
            "text": emb["queries"][keep], "labels": {a: np.array([labels[c][a] for c in ids]) for a in ATTRIBUTES},
            "captions": [captions[c] for c in ids],
            "all_labels": {q.caption_id: (q.vid, labels[q.caption_id]) for q in rows},
            "fractions": np.array([(q.end - q.start) / q.duration for q in rows])}


def bag_and_moment_matches(all_labels: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per caption: videos holding its shape, colour, motion and scene somewhere (as a bag), and
    videos holding them in one event."""
    fields = ("shape", "colour", "motion", "scene")
    bags, events = {}, {}
    for vid, label in all_labels.values():
        bag = bags.setdefault(vid, {f: set() for f in fields})
        for f in fields:
            bag[f].add(label[f])
        events.setdefault(vid, set()).add(tuple(label[f] for f in fields))
    keys = [tuple(label[f] for f in fields) for _, label in all_labels.values()]
    as_bag = [sum(all(v in bag[f] for f, v in zip(fields, key)) for bag in bags.values()) for key in keys]
    in_event = [sum(key in e for e in events.values()) for key in keys]
    return np.array(as_bag), np.array(in_event)


def probe(train_x, train_y, test_x, test_y) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return float(model.fit(train_x, train_y).score(test_x, test_y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="results/demo")
    parser.add_argument("--config", default="config/config.yaml")
    args = parser.parse_args()
    cfg = load_config(args.config)
    train, test = (split_events(cfg, Path(args.data), s) for s in ("train", "test"))
    print(f"{len(train['video'])} train events, {len(test['video'])} test events; features {args.data}/features\n")
    print("| attribute | classes | majority rate | video probe | video seq. probe | text probe | named |\n"
          "|---|---|---|---|---|---|---|")
    for attr in ATTRIBUTES:
        y_train, y_test = train["labels"][attr], test["labels"][attr]
        values, counts = np.unique(y_test, return_counts=True)
        video, sequence, text = (probe(train[k], y_train, test[k], y_test) for k in ("video", "sequence", "text"))
        named = np.mean([names(c, attr, v) for c, v in zip(test["captions"], y_test)])
        print(f"| {attr} | {len(values)} | {counts.max() / counts.sum():.2f} | {video:.2f} | {sequence:.2f} "
              f"| {text:.2f} | {named:.2f} |")
    fractions = test["fractions"]
    as_bag, in_event = bag_and_moment_matches(test["all_labels"])
    print(f"\ntest moments: {100 * fractions.mean():.1f} % of their video on average, median "
          f"{100 * np.median(fractions):.1f} %; a caption's shape, colour, motion and scene occur in "
          f"{as_bag.mean():.1f} test videos as a bag (unique for {100 * np.mean(as_bag == 1):.0f} % of captions), "
          f"in one event of {in_event.mean():.2f} (unique for {100 * np.mean(in_event == 1):.0f} %)")


if __name__ == "__main__":
    main()
