"""An approximate first stage for searching large indexes (`prvr search --approx`; faiss, optional:
`pip install faiss-cpu`). Exact search (prvr.search.fast_scores) stays the default.

    stage = approx_stage(index)                     # built once (or read from INDEX/approx/), per score branch
    order, scores, row_scores = approx_top_k_rows(query, index, branches, weights, 10, ranking, stage)

A video's score is w_0 max_n cos(q_0, t0_vn) + w_1 max_n cos(q_1, t1_vn) over the model's two score
branches. Per branch, every stored token (unit length) is a vector of a faiss inner-product index; a
query fetches the `tokens` tokens nearest its own branch query, and the videos owning them are the
candidates (a video of the exact top k has a token near at least one branch query, unless its score
is spread over both branches). The candidates, all their rows (every window of a long video), are
then ranked exactly as an exact search ranks (exact_top_k_rows: float16 products within a bound,
float64 near the k-th): the scores and the order among candidates are exact; what can be missed is a
video that was never a candidate. Its recall@10 against exact search is measured in docs/search.md
(bench/bench_search.py --approx); it depends on the tokens' structure, so check it on one's own index
(Searcher.search(..., approx=False) gives the exact hits).

The faiss index per branch: `factory_for` (IVF lists with product-quantised codes, 48 bytes per
384-d token; a small index is a flat exact one), trained on a fixed-seed sample of the tokens. It is
saved under INDEX/approx/ with the sha256 of the index.json it was built from, and rebuilt when the
index changed.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from prvr.errors import PrvrError
from prvr.evaluation import model_scores
from prvr.io import atomic_path, write_json
from prvr.provenance import sha256_file
from prvr.search.fast_scores import BLOCK_VIDEOS, top_k_among

TOKENS = 256  # nearest tokens fetched per branch and query
NPROBE = 32  # IVF lists visited per query
FLAT_BELOW = 200_000  # tokens per branch under which the stage is a flat (exact) token index
TRAIN_PER_LIST = 64  # training tokens per IVF list (faiss asks for at least 39)
TRAIN_PQ = 16_384  # training tokens for the 256 codes of each PQ sub-quantiser (faiss asks for 9,984)
FOLDER = "approx"


def faiss_module():
    """faiss, or a one-line error saying how to get it."""
    try:
        import faiss
    except ImportError:
        raise PrvrError("--approx needs faiss: pip install faiss-cpu (or faiss-gpu)") from None
    return faiss


def factory_for(n_tokens: int, dim: int) -> str:
    """The faiss index factory string for `n_tokens` vectors of `dim`: "Flat" below FLAT_BELOW, else
    IVF with about sqrt(n) / 4 lists (a power of two: 1,024 for 100k videos of 160 tokens, whose
    k-means on 2 cores takes seconds, not the hour of faiss's usual 4 sqrt(n)) and PQ codes of
    dim / 8 bytes (8 dims a byte)."""
    if n_tokens < FLAT_BELOW:
        return "Flat"
    lists = 2 ** round(math.log2(math.sqrt(n_tokens) / 4))
    m = max(d for d in range(1, max(1, dim // 8) + 1) if dim % d == 0)  # sub-quantisers: a divisor of dim
    return f"IVF{lists},PQ{m}"


def unit_rows(tokens: torch.Tensor, inv_norms: torch.Tensor, start: int, stop: int) -> np.ndarray:
    """(b * N, H) float32 unit tokens of index rows start..stop, C-contiguous as faiss reads them."""
    block = tokens[start:stop].float() * inv_norms[start:stop, :, None]  # (b, N, H)
    return np.ascontiguousarray(block.reshape(-1, tokens.shape[-1]).numpy())


def build_branch(tokens: torch.Tensor, inv_norms: torch.Tensor, factory: str, seed: int = 0, desc: str = ""):
    """A trained faiss inner-product index over every token of `tokens` (R, N, H), token id r * N + n."""
    faiss = faiss_module()
    rows, n, dim = tokens.shape
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as err:
        raise PrvrError(f"--approx-factory {factory!r}: faiss cannot make it ({str(err).splitlines()[-1][:120]})") from None
    if not index.is_trained:
        ivf = faiss.extract_index_ivf(index)
        if hasattr(ivf, "do_polysemous_training"):  # faiss's default for IVF,PQ: minutes of training, unused here
            ivf.do_polysemous_training = False
        size = min(rows * n, max(TRAIN_PER_LIST * ivf.nlist, TRAIN_PQ))
        if size < 39 * ivf.nlist:
            raise PrvrError(f"--approx-factory {factory!r}: {rows * n} tokens are too few to train {ivf.nlist} lists")
        picked = np.sort(np.random.default_rng(seed).choice(rows * n, size, replace=False))
        flat = tokens.reshape(-1, dim)[torch.from_numpy(picked)].float()  # (S, H)
        flat = flat * inv_norms.reshape(-1)[torch.from_numpy(picked), None]
        index.train(np.ascontiguousarray(flat.numpy()))
    for start in tqdm(range(0, rows, BLOCK_VIDEOS), desc=f"approx index {desc}".strip(), unit="block",
                      disable=rows <= BLOCK_VIDEOS):
        index.add(unit_rows(tokens, inv_norms, start, min(rows, start + BLOCK_VIDEOS)))
    return index


@dataclass(frozen=True)
class ApproxOptions:
    """How a search uses the approximate stage: the faiss factory (None: the saved one, else
    factory_for), the nearest tokens fetched per branch, the IVF lists visited."""
    factory: str | None = None
    tokens: int = TOKENS
    nprobe: int = NPROBE

    def __post_init__(self):
        if self.tokens < 1 or self.nprobe < 1:
            raise PrvrError(f"--approx-tokens and --nprobe must be >= 1, got {self.tokens} and {self.nprobe}")


@dataclass
class ApproxStage:
    """One faiss index per score branch's video key, over the index's rows."""
    indexes: dict
    factory: str
    tokens_per_row: dict[str, int]

    def nearest_rows(self, key: str, unit_query: np.ndarray, n_tokens: int, nprobe: int) -> np.ndarray:
        """The index rows owning the `n_tokens` tokens of branch `key` nearest `unit_query` (H,)."""
        index = self.indexes[key]
        if "IVF" in self.factory:
            faiss_module().extract_index_ivf(index).nprobe = nprobe
        _, ids = index.search(unit_query[None].astype(np.float32), n_tokens)  # (1, n_tokens)
        ids = ids[0][ids[0] >= 0]
        return np.unique(ids // self.tokens_per_row[key])


def check_plain(branches):
    """faiss, when every score branch is a plain max-cosine one (a guided branch, MS-SL's key-clip
    branch, reads another output's argmax: no token index finds its maxima)."""
    faiss = faiss_module()
    guided = [b.name for b in branches if b.guide_key is not None]
    if guided:
        raise PrvrError(f"--approx needs plain max-cosine score branches; this model's {guided} is guided by "
                        "another output (search it exactly)")
    return faiss


def video_keys(branches) -> list[str]:
    """The video outputs the score branches read (model_scores.video_keys), sorted: one faiss index each."""
    return sorted(model_scores.video_keys(branches))


def build_stage(tokens: dict[str, torch.Tensor], inv_norms: dict[str, torch.Tensor], branches,
                factory: str | None = None) -> ApproxStage:
    """A stage over index rows tokens {key: (R, N, H)} for the video keys of `branches` (None: factory_for)."""
    check_plain(branches)
    keys = video_keys(branches)
    sizes = {key: tokens[key].shape[1] for key in keys}
    rows, dim = tokens[keys[0]].shape[0], tokens[keys[0]].shape[-1]
    factory = factory or factory_for(rows * max(sizes.values()), dim)
    return ApproxStage({k: build_branch(tokens[k], inv_norms[k], factory, desc=k) for k in keys}, factory, sizes)


def approx_stage(index, branches, factory: str | None = None) -> ApproxStage:
    """The stage of a LoadedIndex: read from INDEX/approx/ when built from this index.json with this
    factory (None: the one saved), else built and saved there (atomically)."""
    faiss = check_plain(branches)
    keys = video_keys(branches)
    folder, fingerprint = index.folder / FOLDER, sha256_file(index.folder / "index.json")
    saved = _read_saved(folder, fingerprint, factory, keys)
    if saved is not None:
        return ApproxStage({k: faiss.read_index(str(folder / f"{k}.faiss")) for k in keys}, saved,
                           {key: index.tokens[key].shape[1] for key in keys})
    stage = build_stage(index.tokens, index.inv_norms, branches, factory)
    folder.mkdir(exist_ok=True)
    for key, built in stage.indexes.items():
        with atomic_path(folder / f"{key}.faiss") as tmp:
            faiss.write_index(built, str(tmp))
    write_json(folder / "approx.json", {"index_json_sha256": fingerprint, "factory": stage.factory, "keys": keys})
    return stage


def _read_saved(folder: Path, fingerprint: str, factory: str | None, keys: list[str]) -> str | None:
    """The saved stage's factory when it was built from this index with `factory` (None: any)."""
    try:
        saved = json.loads((folder / "approx.json").read_text())
    except (OSError, ValueError):
        return None
    if (not isinstance(saved, dict) or saved.get("index_json_sha256") != fingerprint or saved.get("keys") != keys
            or (factory is not None and saved.get("factory") != factory)
            or not all((folder / f"{k}.faiss").is_file() for k in keys)):
        return None
    return saved["factory"]


def candidate_videos(query: dict[str, torch.Tensor], stage: ApproxStage, branches, row_video: torch.Tensor,
                     n_tokens: int = TOKENS, nprobe: int = NPROBE, want: int = 1) -> torch.Tensor:
    """(C,) sorted ids of the videos owning a token among the `n_tokens` nearest each branch query
    (more tokens are fetched until at least `want` videos are found)."""
    n_videos = int(row_video.max()) + 1
    while True:
        found = []
        for branch in branches:
            q = query[branch.query_key][0].float()
            unit = (q / q.norm().clamp(min=1e-12)).numpy()  # (H,)
            found.append(row_video[torch.from_numpy(stage.nearest_rows(branch.video_key, unit, n_tokens, nprobe))])
        videos = torch.unique(torch.cat(found))
        # too few videos (their tokens all near the query, or an IVF probe ran dry): fetch more tokens
        if len(videos) >= min(want, n_videos) or n_tokens >= len(row_video) * max(stage.tokens_per_row.values()):
            return videos
        n_tokens *= 4


def approx_top_k_rows(query: dict[str, torch.Tensor], index, branches, weights: tuple[float, float], k: int,
                      ranking, stage: ApproxStage, n_tokens: int = TOKENS, nprobe: int = NPROBE
                      ) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """As fast_scores.exact_top_k_rows (order over videos, their scores (V,), row scores (R,), NaN where
    not computed), ranked exactly among the candidates of `stage` only."""
    videos = candidate_videos(query, stage, branches, index.row_video, n_tokens, nprobe, k)  # (C,)
    return top_k_among(query, index.tokens, index.inv_norms, index.row_video, index.ids, videos, branches, weights,
                       k, ranking)
