"""Auxiliary attribute read-outs for the demo CLIP's pretraining (prvr.features.pretrain).

The DAG generates its pretraining stills itself (prvr.demo.pretraining_pairs), so it knows what each
one shows (shape, colour, scene, visibility, position, size, angle) and what its caption names.
These linear heads read those attributes from the normalised CLIP embeddings; their loss is added
to the contrastive loss during pretraining and the heads are thrown away afterwards (the saved
weights are open_clip's alone). A linear read-out is what the attribute probes of
bench/probe_clip_attributes.py test, so this asks the embeddings for exactly that.

    heads = AttributeHeads(64, labels)                 # labels: name -> (N,) int64 or (N, 5) float32
    terms = heads.terms(image_emb, text_emb, batch_labels)   # {name: scalar loss}
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

GEOMETRY = "image_geometry"
GEOMETRY_COLUMNS = ("x", "y", "log_radius", "cos_angle", "sin_angle")


def _column_stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (+ 1e-6) of each column over its known (non-NaN) rows; 0 and 1 for a column
    with none. (K,) float32 each."""
    known = ~np.isnan(values)  # (N, K)
    count = known.sum(axis=0)
    filled = np.where(known, values, 0.0)
    mean = filled.sum(axis=0) / np.maximum(count, 1)
    var = (np.where(known, values - mean, 0.0) ** 2).sum(axis=0) / np.maximum(count, 1)
    std = np.where(count > 0, np.sqrt(var), 1.0) + 1e-6
    return mean.astype(np.float32), std.astype(np.float32)


class AttributeHeads(torch.nn.Module):
    """One linear head per attribute on the unit-norm embeddings (scaled by sqrt(D)).

    Class heads (labels (N,) int64, -1 = unknown): image_* read the image embedding, text_* the text
    embedding; loss = cross-entropy over the labelled rows. The geometry head (labels (N, 5) float32,
    NaN = unknown) regresses the standardised targets (training-set mean and std per column) from the
    image embedding; loss = mean squared error over the known entries.
    """

    def __init__(self, dim: int, labels: dict[str, np.ndarray]):
        super().__init__()
        self.scale = math.sqrt(dim)  # unit vectors have entries ~ 1 / sqrt(D); the heads see ~ 1
        classes = {name: int(v.max()) + 1 for name, v in labels.items() if name != GEOMETRY}
        self.heads = torch.nn.ModuleDict({name: torch.nn.Linear(dim, n) for name, n in classes.items()})
        geometry = labels.get(GEOMETRY)
        self.geometry = None if geometry is None else torch.nn.Linear(dim, geometry.shape[1])
        if geometry is not None:
            mean, std = _column_stats(geometry)
            self.register_buffer("geo_mean", torch.from_numpy(mean))  # (K,)
            self.register_buffer("geo_std", torch.from_numpy(std))  # (K,)

    def _inputs(self, name: str, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return (image if name.startswith("image_") else text) * self.scale

    def _geometry_error(self, image: torch.Tensor, labels: dict[str, torch.Tensor]):
        """Squared errors (B, 5) of the standardised geometry and the mask (B, 5) of known targets."""
        target = (labels[GEOMETRY] - self.geo_mean) / self.geo_std  # (B, 5)
        known = ~torch.isnan(target)
        return (self.geometry(image * self.scale) - target.nan_to_num()) ** 2, known

    def terms(self, image: torch.Tensor, text: torch.Tensor, labels: dict[str, torch.Tensor]) -> dict:
        """{head name: scalar loss} for the heads with a labelled row in the batch.

        image, text: (B, D) unit-norm embeddings; labels: the batch's rows of each label array.
        """
        out = {}
        for name, head in self.heads.items():
            if (labels[name] >= 0).any():
                out[name] = F.cross_entropy(head(self._inputs(name, image, text)), labels[name], ignore_index=-1)
        if self.geometry is not None:
            error, known = self._geometry_error(image, labels)
            if known.any():
                out[GEOMETRY] = error[known].mean()
        return out

    @torch.no_grad()
    def scores(self, image: torch.Tensor, text: torch.Tensor, labels: dict[str, torch.Tensor]) -> dict:
        """Held-out accuracy of each class head (labelled rows) and R^2 of each geometry column."""
        out = {}
        for name, head in self.heads.items():
            keep = labels[name] >= 0
            hits = head(self._inputs(name, image, text)).argmax(dim=1) == labels[name]
            out[f"{name}_acc"] = round(float(hits[keep].float().mean()), 4) if keep.any() else None
        if self.geometry is not None:
            error, known = self._geometry_error(image, labels)
            target = (labels[GEOMETRY] - self.geo_mean) / self.geo_std
            columns = GEOMETRY_COLUMNS if known.shape[1] == len(GEOMETRY_COLUMNS) else range(known.shape[1])
            for k, column in enumerate(columns):
                rows = known[:, k]
                variance = target[rows, k].var() if rows.sum() > 1 else torch.tensor(float("nan"))
                out[f"geometry_{column}_r2"] = round(float(1 - error[rows, k].mean() / variance), 4)
        return out
