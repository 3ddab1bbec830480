"""`search`: put a text query to an index and get the ranked videos with their best moment.

    hits = search("my_index", "a red circle spins on a beach", k=5)
    hits[0]   # Hit(rank=1, video="clip3", score=0.41, start=4.0, end=9.5, duration=20.0, file=...)

    searcher = Searcher("my_index")            # loads model.pt and CLIP once, for many queries
    searcher.search("...", k=10); scores = searcher.scores(searcher.encode(["q1", "q2"]))   # (Q, V) float64

Scores are the evaluation's (the cosines of prvr.evaluation.model_scores.model_scores_chunked over
the model's score branches, weights eval.w_clip and eval.w_frame of the model's config, fused in
float32 and returned as float64; computed by prvr.search.fast_scores on the tokens as stored, their
inverse norms computed once per index), on the stored tokens: float16 tokens move a score by about 1e-3, float32 ones
(index_videos(dtype="float32")) give the evaluation's own numbers to float32 rounding. Ranking:
higher score first; equal scores by video id (ascending). The moment: prvr.search.moments.best_moment
on the cosines of the query (the output the frame branch reads) with each frame token.

The model and CLIP weights are those index.json names; both are checked against its sha256.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from prvr.errors import PrvrError
from prvr.search.encoding import MOMENT_KEY, SearchEncoder
from prvr.search.fast_scores import exact_top_k, index_scores
from prvr.search.moments import RATIO, best_moment
from prvr.search.store import LoadedIndex, check_same_encoder, load_index


@dataclass(frozen=True)
class Hit:
    """One ranked video: its score and best moment (seconds)."""
    rank: int
    video: str
    score: float
    start: float
    end: float
    duration: float
    file: str

    def to_dict(self) -> dict:
        return asdict(self)


class Searcher:
    """An index in memory with the model and CLIP it was built with."""

    def __init__(self, index: str | Path, clip_weights: str | Path | None = None, ratio: float = RATIO):
        self.index: LoadedIndex = load_index(index)
        manifest = self.index.manifest
        model_path = Path(manifest["model"]["path"])
        if not model_path.is_file():
            raise PrvrError(f"{model_path}: model file not found (named by {self.index.folder / 'index.json'})")
        self.encoder = SearchEncoder.load(model_path, clip_weights or manifest["clip"]["weights"])
        check_same_encoder(self.index.folder, manifest, {**self.encoder.describe(), "keys": manifest["keys"],
                                                         "dtype": manifest["dtype"]})
        self.ratio = ratio

    def encode(self, queries: list[str]) -> dict[str, torch.Tensor]:
        """The model's query outputs {key: (Q, H)} for `queries` (what scores and similarities read)."""
        return self.encoder.encode_queries(queries)

    def scores(self, encoded: dict[str, torch.Tensor]) -> np.ndarray:
        """(Q, V) float64 scores of encoded queries against every indexed video (ids in index order)."""
        weights = (self.encoder.cfg.eval.w_clip, self.encoder.cfg.eval.w_frame)
        return index_scores(encoded, self.index.tokens, self.index.inv_norms, self.encoder.branches,
                            weights).numpy()

    def frame_similarities(self, encoded: dict[str, torch.Tensor], videos=None) -> np.ndarray:
        """(Q, len(videos), Nf) cosines of each encoded query with the frame tokens of the video rows
        `videos` (default: every video)."""
        rows = torch.arange(len(self.index.ids)) if videos is None else torch.as_tensor(list(videos))
        query = F.normalize(encoded[self.encoder.moment_query_key()], dim=-1)  # (Q, H)
        tokens = self.index.tokens[MOMENT_KEY][rows].float()  # (V', Nf, H)
        inv = self.index.inv_norms[MOMENT_KEY][rows]  # (V', Nf)
        return (torch.einsum("qh,vnh->qvn", query, tokens) * inv).numpy()

    def moment(self, sims: np.ndarray, video: int) -> tuple[float, float]:
        """(start, end) seconds of the best moment in video row `video` for similarities (Nf,)."""
        return best_moment(sims, self.index.spans[video], self.ratio)

    def search(self, query: str, k: int = 10) -> list[Hit]:
        """The k best videos for `query`, each with its score and moment."""
        if k < 1:
            raise PrvrError(f"search: k must be >= 1, got {k}")
        if not query.strip():
            raise PrvrError("search: the query is empty")
        encoded = self.encode([query])
        weights = (self.encoder.cfg.eval.w_clip, self.encoder.cfg.eval.w_frame)
        order, scores = exact_top_k(encoded, self.index.tokens, self.index.inv_norms, self.encoder.branches,
                                    weights, k, self.index.ids, ranking)  # exact scores of the candidates
        scores = scores.numpy()
        sims = self.frame_similarities(encoded, order)[0]  # (k, Nf): the hits' videos only
        hits = []
        for rank, (video, sim) in enumerate(zip(order, sims), 1):
            start, end = self.moment(sim, video)
            vid = self.index.ids[video]
            hits.append(Hit(rank, vid, float(scores[video]), start, end, float(self.index.durations[video]),
                            self.index.file(vid)))
        return hits


def ranking(scores: np.ndarray, ids: list[str]) -> list[int]:
    """Row indices by score, highest first, equal scores by id ascending."""
    by_id = np.argsort(np.asarray(ids), kind="stable")  # ids in ascending order (an index holds them so)
    order = np.argsort(-np.asarray(scores)[by_id], kind="stable")  # stable: equal scores keep id order
    return by_id[order].tolist()


def search(index: str | Path, query: str, k: int = 10, clip_weights: str | Path | None = None) -> list[Hit]:
    """The k best videos of the index at `index` for `query` (loads the index, model and CLIP)."""
    return Searcher(index, clip_weights).search(query, k)
