"""A trained model.pt with its CLIP, ready to encode videos and queries exactly as the pipeline does.

    enc = SearchEncoder.load("runs/full/seed1/model.pt", clip_weights="clip/tiny_clip.pt")
    feats = enc.frame_features("my.mp4")      # (T, D) CLIP features of the sampled frames
    tokens = enc.encode_frames(feats)         # {key: (N, H) float32}: what the index stores
    queries = enc.encode_queries(["a red circle ..."])   # {query key: (Q, H) float32}

Videos: decode_video with the model's saved `frames` settings at CLIP's image size and CLIP frame
features (prvr.features.extract.video_frame_features, the pipeline's own function), resampled to
model.frame_tokens (prvr.store.resample, as the dataset does), then model.encode_videos on that one
video at eval.precision; the outputs its score branches read are kept, plus `frame_tokens` for the
moment. A long video (prvr.search.windows) is sampled at the windows' rate over its whole length,
and each window's frames are resampled and encoded like one video (WINDOW_BATCH windows per call).
Queries: CLIP token features (encode_text_tokens, as the text-feature stage), cut to
model.max_query_len (as the dataset), padded (pad_queries) and model.encode_queries.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from prvr.config import Config
from prvr.data.dataset import pad_queries
from prvr.errors import PrvrError
from prvr.evaluation import model_scores
from prvr.evaluation.evaluate import encoding_precision, score_branches
from prvr.features.clip import ClipEncoder, encode_text_tokens, load_clip
from prvr.features.extract import video_frame_features
from prvr.provenance import sha256_file
from prvr.store.resample import resample_frames
from prvr.training.model_file import model_from_saved, read_model_file
from prvr.video.decoding import video_info

MOMENT_KEY = "frame_tokens"  # the encode_videos output the moment is read from
WINDOW_BATCH = 64  # windows of a long video encoded by the model at a time
STREAM_BATCHES = 4  # CLIP batches of a long video decoded at a time (4 x 256 frames at 224 px: 154 MB)


@dataclass
class SearchEncoder:
    """A loaded model, its config, its CLIP and what identifies them in an index."""
    model: torch.nn.Module
    cfg: Config
    clip: ClipEncoder
    model_path: Path
    model_sha256: str
    clip_weights: str
    config_hash: str  # of the config as model.pt stores it (stable across prvr versions)

    @classmethod
    def load(cls, model_path: str | Path, clip_weights: str | Path | None = None) -> "SearchEncoder":
        """model.pt and the CLIP weights: `clip_weights`, else the model's clip.pretrained."""
        model_path = Path(model_path)
        saved = read_model_file(model_path)
        model, cfg = model_from_saved(saved, str(model_path), device="cpu")
        weights = str(clip_weights) if clip_weights else cfg.clip.pretrained
        if not weights:
            raise PrvrError(f"{model_path}: its config has no clip.pretrained (the demo pretrains CLIP in the "
                            f"workflow): give the CLIP weights, e.g. --clip-weights results/{cfg.dataset}/clip/tiny_clip.pt")
        clip = load_clip(cfg.clip.model, weights, device="cpu", batch_size=cfg.clip.batch_size)
        if clip.embed_dim != cfg.model.input_dim:
            raise PrvrError(f"{weights}: CLIP {cfg.clip.model} gives {clip.embed_dim}-d features, "
                            f"{model_path} reads {cfg.model.input_dim}-d ones")
        saved_config = json.dumps(saved["config"], sort_keys=True, default=str).encode()
        return cls(model, cfg, clip, model_path, sha256_file(model_path), weights,
                   hashlib.sha256(saved_config).hexdigest()[:16])

    def describe(self) -> dict:
        """What an index records about the encoder; an index is only extended by an equal one."""
        weights = Path(self.clip_weights)
        sha = sha256_file(weights) if weights.is_file() else None
        return {"model": {"path": str(self.model_path.resolve()), "sha256": self.model_sha256,
                          "config_hash": self.config_hash, "name": self.cfg.model.name},
                "clip": {"model": self.cfg.clip.model, "weights": str(weights.resolve()) if sha else self.clip_weights,
                         "sha256": sha, "id": sha or self.clip_weights},  # id: the file's hash, or the tag
                "frames": {"fps": self.cfg.frames.fps, "num_frames": self.cfg.frames.num_frames,
                           "max_frames": self.cfg.frames.max_frames, "backend": self.cfg.frames.backend},
                "frame_tokens": self.cfg.model.frame_tokens,
                "weights": [self.cfg.eval.w_clip, self.cfg.eval.w_frame]}

    @property
    def branches(self):
        return score_branches(self.model)

    def video_keys(self) -> tuple[str, ...]:
        """The encode_videos outputs an index stores: those the score reads, and frame_tokens."""
        keys = model_scores.video_keys(self.branches)
        return keys if MOMENT_KEY in keys else (*keys, MOMENT_KEY)

    def duration(self, path: str | Path, folder_fps: float | None = None) -> float:
        """A video's duration (s), as the sampling measures it (first frame to the end of the last);
        folder_fps: `path` is a folder of frame images shown at this rate (TVR's frames)."""
        return float(video_info(path, backend=self.cfg.frames.backend, folder_fps=folder_fps)["duration"])

    def frame_features(self, path: str | Path, rate: float | None = None,
                       folder_fps: float | None = None) -> np.ndarray:
        """(T, D) CLIP features of a video's sampled frames: the pipeline's (its `frames` settings), or
        with `rate`, `rate` frames per second over the whole video without the max_frames cap (a long
        video cut into windows: prvr.search.windows), decoded and CLIP-encoded STREAM_BATCHES CLIP
        batches at a time (equal to the bit to decoding it whole). folder_fps: as `duration`."""
        if rate is None:
            return video_frame_features(path, self.clip, self.cfg.frames, folder_fps=folder_fps)  # (T, D)
        frames_cfg = replace(self.cfg.frames, fps=rate, num_frames=None, max_frames=None)
        return video_frame_features(path, self.clip, frames_cfg, folder_fps=folder_fps,
                                    stream_batches=STREAM_BATCHES)  # (T, D), decoded a piece at a time

    def encode_frames(self, feats: np.ndarray) -> dict[str, np.ndarray]:
        """(T, D) CLIP frame features -> {key: (N, H) float32} of the model's video encoder."""
        return self.encode_frame_sets([feats])[0]

    @torch.no_grad()
    def encode_frame_sets(self, sets: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Each (T_i, D) CLIP frame features (a video, or a window of one) resampled to frame_tokens and
        encoded by the model's video encoder, WINDOW_BATCH at a time -> {key: (N, H) float32} each."""
        out = []
        for start in range(0, len(sets), WINDOW_BATCH):
            frames = np.stack([resample_frames(f, self.cfg.model.frame_tokens)
                               for f in sets[start:start + WINDOW_BATCH]])  # (B, Nf, D)
            with encoding_precision(self.cfg.eval.precision, "cpu"):
                encoded = self.model.encode_videos(torch.from_numpy(frames.astype(np.float32)))
            keys = {key: encoded[key].float().numpy() for key in self.video_keys()}  # (B, N, H) each
            out += [{key: value[i] for key, value in keys.items()} for i in range(len(frames))]
        return out

    @torch.no_grad()
    def encode_queries(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """{query key: (Q, H) float32} of the captions `texts`, as the evaluation encodes them."""
        tokens = [t[:self.cfg.model.max_query_len] for t in encode_text_tokens(self.clip, list(texts))]  # (L_i, D)
        feats, mask = pad_queries(tokens)  # (Q, L, D), (Q, L)
        with encoding_precision(self.cfg.eval.precision, "cpu"):
            out = self.model.encode_queries(feats, mask)
        out = out if isinstance(out, dict) else {"query": out}
        return {key: out[key].float() for key in model_scores.query_keys(self.branches) + (self.moment_query_key(),)}

    def moment_query_key(self) -> str:
        """The query output compared with frame_tokens: that of the branch reading them, else "query"."""
        return next((b.query_key for b in self.branches if b.video_key == MOMENT_KEY), "query")
