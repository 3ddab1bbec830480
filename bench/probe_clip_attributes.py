"""Diagnostic: which event attributes do the demo's frozen CLIP features encode? (linear probes)

    .venv/bin/python -m bench.probe_clip_attributes [--data results/demo] [--config config/config.yaml]

Needs a built demo (`snakemake results/demo/features/text_feats.h5` and the video features). For every
event of the train and test splits: the video side = mean of the CLIP frame features inside the event
(resampled as for training), the text side = the caption's CLIP sentence vector (end-of-text token).
A logistic regression per attribute (shape, motion, colour, scene; the hidden event labels) is fitted
on train events and scored on test events. Prints a markdown table of test accuracy against the
majority-class rate: an attribute at the majority rate is invisible to the features.

A mean of frame features cannot show motion, so a second video probe sees the event as a sequence:
its first, middle and last inside frame tokens (normalised), last - first, middle - first and their
standard deviation over the event, concatenated ("video seq."): motion is visible there when the
frame features carry position, size and visibility. The text probe cannot beat the share of captions
that name the attribute (captions leave colour, scene and size out at random), printed as "named".
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from prvr.config import load_config
from prvr.data.annotations import read_tvr_jsonl
from prvr.data.vocabulary import COLOURS, MOTIONS, SCENES, SHAPES
from prvr.evaluation.analysis import _normalise, event_embeddings, split_embeddings
from prvr.stages import _analysis_inputs, event_labels

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
    text = f" {caption.lower().rstrip('.')} "
    return any(f" {form} " in text for form in SURFACE[attr][value])


def split_events(cfg, data: Path, split: str):
    """Video-side mean (E, D) and sequence (E, 6 D), text-side (E, D) embeddings of a split's events,
    their labels and captions."""
    annotations, labels_file = data / f"annotations/{split}.jsonl", data / "annotations/event_labels.jsonl"
    _, _, _, dataset, moments = _analysis_inputs(None, cfg, annotations, data / f"captions/{split}.caption.txt",
                                                 data / "features/video_feats.h5",
                                                 data / "features/text_feats.h5", labels_file)
    rows = read_tvr_jsonl(annotations)
    labels = event_labels(rows, labels_file)
    emb = split_embeddings(None, dataset)
    video, keep = event_embeddings(emb["frame_tokens"], moments)
    sequence = sequence_features(emb["frame_tokens"], moments, keep)
    ids = [dataset.index.caption_ids[i] for i in keep]
    captions = {q.caption_id: q.desc for q in rows}
    return (video, sequence, emb["queries"][keep], {a: np.array([labels[c][a] for c in ids]) for a in ATTRIBUTES},
            [captions[c] for c in ids])


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
    print(f"{len(train[0])} train events, {len(test[0])} test events; features {args.data}/features\n")
    print("| attribute | classes | majority rate | video probe | video seq. probe | text probe | named |\n"
          "|---|---|---|---|---|---|---|")
    for attr in ATTRIBUTES:
        y_train, y_test = train[3][attr], test[3][attr]
        values, counts = np.unique(y_test, return_counts=True)
        video, sequence, text = (probe(train[k], y_train, test[k], y_test) for k in range(3))
        named = np.mean([names(c, attr, v) for c, v in zip(test[4], y_test)])
        print(f"| {attr} | {len(values)} | {counts.max() / counts.sum():.2f} | {video:.2f} | {sequence:.2f} "
              f"| {text:.2f} | {named:.2f} |")


if __name__ == "__main__":
    main()
