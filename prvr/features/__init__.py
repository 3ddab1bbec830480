"""CLIP features: open_clip loading (names or local weight files), the in-DAG pretraining of the demo's tiny CLIP,
and frame and caption feature extraction."""
