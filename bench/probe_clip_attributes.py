"""Diagnostic: which event attributes do the demo's frozen CLIP features encode? (linear probes)

    .venv/bin/python -m bench.probe_clip_attributes [--data results/demo] [--config config/config.yaml]

Needs a built demo (`snakemake results/demo/features/text_feats.h5` and the video features). For every
event of the train and test splits: the video side = mean of the CLIP frame features inside the event
(resampled as for training), the text side = the caption's CLIP sentence vector (end-of-text token).
A logistic regression per attribute (shape, motion, colour, scene; the hidden event labels) is fitted
on train events and scored on test events. Prints a markdown table of test accuracy against the
majority-class rate: an attribute at the majority rate is invisible to the features.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from prvr.config import load_config
from prvr.data.annotations import read_tvr_jsonl
from prvr.evaluation.analysis import event_embeddings, split_embeddings
from prvr.stages import _analysis_inputs, event_labels

ATTRIBUTES = ("shape", "motion", "colour", "scene")


def split_events(cfg, data: Path, split: str) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Video-side (E, D) and text-side (E, D) embeddings of a split's events and their labels."""
    annotations, labels_file = data / f"annotations/{split}.jsonl", data / "annotations/event_labels.jsonl"
    _, _, _, dataset, moments = _analysis_inputs(None, cfg, annotations, data / f"captions/{split}.caption.txt",
                                                 data / "features/video_feats.h5",
                                                 data / "features/text_feats.h5", labels_file)
    labels = event_labels(read_tvr_jsonl(annotations), labels_file)
    emb = split_embeddings(None, dataset)
    video, keep = event_embeddings(emb["frame_tokens"], moments)
    ids = [dataset.index.caption_ids[i] for i in keep]
    return video, emb["queries"][keep], {a: np.array([labels[c][a] for c in ids]) for a in ATTRIBUTES}


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
    print("| attribute | classes | majority rate | video probe | text probe |\n|---|---|---|---|---|")
    for attr in ATTRIBUTES:
        values, counts = np.unique(test[2][attr], return_counts=True)
        video = probe(train[0], train[2][attr], test[0], test[2][attr])
        text = probe(train[1], train[2][attr], test[1], test[2][attr])
        print(f"| {attr} | {len(values)} | {counts.max() / counts.sum():.2f} | {video:.2f} | {text:.2f} |")


if __name__ == "__main__":
    main()
