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
on the cosines of the query (the output the frame branch reads) with each frame token. A long video
indexed as windows (prvr.search.windows) scores the max over its windows; its moment is found in
that window and reported in the long video's seconds.

Exact search's first pass over every token reads int8 copies of the tokens (`scan="auto"`: where
torch's int8 product is vectorised; prvr.search.int8_scan) with a bound that keeps the top k exact;
scan="float16" reads the stored tokens instead (a third less memory, slower).
`approx=ApproxOptions()` ranks exactly among the candidates of an approximate first stage (faiss,
prvr.search.approx) instead of among every video: faster on large indexes, with a measured recall.

The model and CLIP weights are those index.json names; both are checked against its sha256.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from prvr.errors import PrvrError
from prvr.search.approx import ApproxOptions, approx_stage, approx_top_k_rows
from prvr.search.encoding import MOMENT_KEY, SearchEncoder
from prvr.search.fast_scores import exact_top_k_rows, index_scores
from prvr.search.int8_scan import int8_top_k_rows, quantize_index, wants_int8
from prvr.search.moments import RATIO, best_moment
from prvr.search.store import LoadedIndex, check_same_encoder, load_index
from prvr.search.windows import group_max


@dataclass(frozen=True)
class Hit:
    """One ranked video: its score and best moment (seconds of the video); `window`: for a long video,
    the [start, end] seconds of the window its score and moment come from (None: not windowed)."""
    rank: int
    video: str
    score: float
    start: float
    end: float
    duration: float
    file: str
    window: tuple[float, float] | None = None
    folder_fps: float | None = None  # `file` is a frame folder shown at this rate

    def to_dict(self) -> dict:
        return asdict(self)


class Searcher:
    """An index in memory with the model and CLIP it was built with."""

    def __init__(self, index: str | Path, clip_weights: str | Path | None = None, ratio: float = RATIO,
                 approx: ApproxOptions | None = None, scan: str = "auto"):
        use_int8 = wants_int8(scan)  # a bad value fails before the index is read
        self.index: LoadedIndex = load_index(index)
        manifest = self.index.manifest
        model_path = Path(manifest["model"]["path"])
        if not model_path.is_file():
            raise PrvrError(f"{model_path}: model file not found (named by {self.index.folder / 'index.json'})")
        self.encoder = SearchEncoder.load(model_path, clip_weights or manifest["clip"]["weights"])
        check_same_encoder(self.index.folder, manifest, {**self.encoder.describe(), "keys": manifest["keys"],
                                                         "dtype": manifest["dtype"],
                                                         "windows": manifest.get("windows")})
        self.ratio = ratio
        self.approx = approx  # None: exact search
        self.stage = approx_stage(self.index, self.encoder.branches, approx.factory) if approx else None
        # exact search's first pass on int8 copies (None: on the float16 tokens; prvr.search.int8_scan)
        self.scans = quantize_index(self.index, self.encoder.branches) if use_int8 and not approx else None

    def encode(self, queries: list[str]) -> dict[str, torch.Tensor]:
        """The model's query outputs {key: (Q, H)} for `queries` (what scores and similarities read)."""
        return self.encoder.encode_queries(queries)

    def row_scores(self, encoded: dict[str, torch.Tensor]) -> torch.Tensor:
        """(Q, R) float64 scores of encoded queries against every row (a video, or a window of one)."""
        weights = (self.encoder.cfg.eval.w_clip, self.encoder.cfg.eval.w_frame)
        return index_scores(encoded, self.index.tokens, self.index.inv_norms, self.encoder.branches, weights)

    def scores(self, encoded: dict[str, torch.Tensor]) -> np.ndarray:
        """(Q, V) float64 scores of encoded queries against every indexed video (ids in index order): a
        long video's is the max over its windows."""
        return self.video_scores(self.row_scores(encoded))[0].numpy()

    def video_scores(self, row_scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Row scores (..., R) -> each video's score (..., V) and the row it comes from (the first on ties)."""
        return group_max(row_scores, self.index.row_video, len(self.index.ids))

    def frame_similarities(self, encoded: dict[str, torch.Tensor], rows=None) -> np.ndarray:
        """(Q, len(rows), Nf) cosines of each encoded query with the frame tokens of the index rows
        `rows` (default: every row; a row is a video, or a window of a long one)."""
        rows = torch.arange(len(self.index.row_video)) if rows is None else torch.as_tensor(list(rows))
        query = F.normalize(encoded[self.encoder.moment_query_key()], dim=-1)  # (Q, H)
        tokens = self.index.tokens[MOMENT_KEY][rows].float()  # (R', Nf, H)
        inv = self.index.inv_norms[MOMENT_KEY][rows]  # (R', Nf)
        return (torch.einsum("qh,vnh->qvn", query, tokens) * inv).numpy()

    def moment(self, sims: np.ndarray, row: int) -> tuple[float, float]:
        """(start, end) seconds of the best moment in index row `row` for similarities (Nf,), in the
        video's time (a window's token spans are the long video's seconds)."""
        return best_moment(sims, self.index.spans[row], self.ratio)

    def search(self, query: str, k: int = 10) -> list[Hit]:
        """The k best videos for `query`, each with its score and moment (a long video's from its best
        window, the first on ties)."""
        if k < 1:
            raise PrvrError(f"search: k must be >= 1, got {k}")
        if not query.strip():
            raise PrvrError("search: the query is empty")
        encoded = self.encode([query])
        weights = (self.encoder.cfg.eval.w_clip, self.encoder.cfg.eval.w_frame)
        if self.scans is not None:  # the same exact top k, its float16 pass on the int8 pass's candidates
            order, scores, row_scores = int8_top_k_rows(encoded, self.index, self.scans, self.encoder.branches,
                                                        weights, k, ranking)
        elif self.stage is None:
            order, scores, row_scores = exact_top_k_rows(encoded, self.index.tokens, self.index.inv_norms,
                                                         self.encoder.branches, weights, k, self.index.ids, ranking,
                                                         self.index.row_video)  # exact scores of the candidates
        else:  # the exact top k among the approximate stage's candidates
            order, scores, row_scores = approx_top_k_rows(encoded, self.index, self.encoder.branches, weights, k,
                                                          ranking, self.stage, self.approx.tokens, self.approx.nprobe)
        best_rows = self.video_scores(row_scores)[1][order].tolist()  # (k,) each hit's best row
        sims = self.frame_similarities(encoded, best_rows)[0]  # (k, Nf): the hits' rows only
        hits = []
        for rank, (video, row, sim) in enumerate(zip(order, best_rows, sims), 1):
            start, end = self.moment(sim, row)
            vid = self.index.ids[video]
            window = tuple(self.index.row_window[row].tolist()) if self.index.windowed(video) else None
            hits.append(Hit(rank, vid, float(scores[video]), start, end, float(self.index.durations[video]),
                            self.index.file(vid), window, self.index.folder_fps(vid)))
        return hits


def ranking(scores: np.ndarray, ids: list[str]) -> list[int]:
    """Row indices by score, highest first, equal scores by id ascending."""
    by_id = np.argsort(np.asarray(ids), kind="stable")  # ids in ascending order (an index holds them so)
    order = np.argsort(-np.asarray(scores)[by_id], kind="stable")  # stable: equal scores keep id order
    return by_id[order].tolist()


def search(index: str | Path, query: str, k: int = 10, clip_weights: str | Path | None = None,
           approx: ApproxOptions | None = None, scan: str = "auto") -> list[Hit]:
    """The k best videos of the index at `index` for `query` (loads the index, model and CLIP);
    `approx`: through the approximate stage (prvr.search.approx), None: exact; `scan`: exact search's
    first pass (prvr.search.int8_scan.SCANS)."""
    return Searcher(index, clip_weights, approx=approx, scan=scan).search(query, k)
