"""Benchmark: search latency over 10k and 100k indexed videos of the TVR shape, exact scoring.

    .venv/bin/python -m bench.bench_search [--videos 10000 100000] [--queries 20] [--threads 2] [--old]
                                           [--tokens random|clustered] [--approx [--nprobe 8 32] [--approx-tokens 256]]
                                           [--no-int8]

An index of N videos is made in memory as prvr.search.store.load_index holds one: random N(0, 1)
tokens of the paper's model at the TVR shape (128 frame tokens and 32 clip tokens of 384 per video,
float16 as stored by default), their inverse norms, and the gmmformer_v2 score branches with the
authors' weights (0.4 clip, 0.6 frame). Per N it times, for --queries random query vectors one at a
time, what a search does after encoding the query:
  search top 10     prvr.search.fast_scores.exact_top_k (float16 products within a stated bound, then
                    the candidates scored exactly in float64; the same top 10 as scoring every video)
                    and the moment similarities of the top 10;
  int8 first pass   the same through an int8 copy of the tokens (prvr.search.int8_scan, search's
                    default where torch's int8 product is vectorised): its top 10 must be the same;
  every score       index_scores (float32 cosines of every video, as `prvr.search.measure` needs),
                    the ranking (ties by id) and the same moment similarities;
and, with --old, the evaluation's own function on float32 tokens (model_scores_chunked, which scales a
float32 copy of every token per call; N <= 20k: 100k float32 tokens need 24.6 GB); with --approx,
the approximate stage (prvr.search.approx: faiss, factory by size) per --nprobe and --approx-tokens,
with its build time, its bytes per video and its recall@10 against the exact top 10 of each query.
--tokens clustered draws tokens with structure instead (clustered_index: topics, videos, moments)
and each query near one token of one video, as a caption describes one moment.
Prints a markdown table with the machine (prvr.provenance.machine): median and 90th percentile
milliseconds per query, bytes per video of the index, peak RSS.
"""
from __future__ import annotations

import argparse
import resource
import time
from types import SimpleNamespace

import numpy as np
import torch

from prvr.evaluation import model_scores
from prvr.models.base import MAX_CLIP_AND_FRAME as MSC_BRANCHES  # gmmformer_v2: max over clip and frame tokens
from prvr.provenance import machine
from prvr.search.approx import approx_top_k_rows, build_stage
from prvr.search.fast_scores import exact_top_k, index_scores, inverse_norms
from prvr.search.int8_scan import int8_candidates, int8_top_k_rows, quantize_index
from prvr.search.searcher import ranking

FRAME_TOKENS, CLIP_TOKENS, HIDDEN, WEIGHTS = 128, 32, 384, (0.4, 0.6)


def make_index(n_videos: int, dtype=torch.float16) -> dict[str, torch.Tensor]:
    """{key: (N, tokens, 384)} random tokens, drawn a block at a time (no float32 copy of the whole)."""
    generator = torch.Generator().manual_seed(0)
    tokens = {}
    for key, n in (("frame_tokens", FRAME_TOKENS), ("clip_tokens", CLIP_TOKENS)):
        out = torch.empty(n_videos, n, HIDDEN, dtype=dtype)
        for start in range(0, n_videos, 4096):
            stop = min(n_videos, start + 4096)
            out[start:stop] = torch.randn(stop - start, n, HIDDEN, generator=generator).to(dtype)
        tokens[key] = out
    return tokens


def clustered_index(n_videos: int, dtype=torch.float16) -> dict[str, torch.Tensor]:
    """{key: (N, tokens, 384)} tokens with structure: 0.5 topic + 0.5 video + 0.7 noise (unit vectors,
    one topic per 100 videos): cosines about 0.5 within a video, 0.25 within a topic, 0 across."""
    generator = torch.Generator().manual_seed(0)
    unit = lambda *shape: torch.nn.functional.normalize(torch.randn(*shape, HIDDEN, generator=generator), dim=-1)  # noqa: E731
    topics = unit(max(1, n_videos // 100))  # (T, H)
    tokens = {key: torch.empty(n_videos, n, HIDDEN, dtype=dtype)
              for key, n in (("frame_tokens", FRAME_TOKENS), ("clip_tokens", CLIP_TOKENS))}
    for start in range(0, n_videos, 4096):
        stop = min(n_videos, start + 4096)
        base = 0.5 * topics[torch.randint(len(topics), (stop - start,), generator=generator)] + 0.5 * unit(stop - start)
        for key, out in tokens.items():
            out[start:stop] = (base[:, None] + 0.7 * unit(stop - start, out.shape[1])).to(dtype)
    return tokens


def make_queries(kind: str, n_queries: int, tokens) -> list[dict[str, torch.Tensor]]:
    """Random query vectors, or (clustered) 0.7 one frame token of a random video + 0.7 noise."""
    generator = torch.Generator().manual_seed(1)
    queries = []
    for _ in range(n_queries):
        noise = torch.randn(1, HIDDEN, generator=generator)
        if kind == "clustered":
            video = int(torch.randint(tokens["frame_tokens"].shape[0], (1,), generator=generator))
            token = tokens["frame_tokens"][video, int(torch.randint(FRAME_TOKENS, (1,), generator=generator))].float()
            noise = 0.7 * token / token.norm() + 0.7 * noise / noise.norm()
        queries.append({"query": noise})
    return queries


def time_queries(top_fn, queries, tokens) -> tuple[list[float], list[list[int]]]:
    """Milliseconds per query of top_fn (the top 10 rows) + the top 10's frame similarities; the tops."""
    times, tops = [], []
    for query in queries:
        start = time.perf_counter()
        top = top_fn(query)
        frames = tokens["frame_tokens"][top].float()  # (10, Nf, H): the moment's similarities
        torch.einsum("qh,vnh->qvn", query["query"], frames)
        times.append(1000 * (time.perf_counter() - start))
        tops.append(list(top))
    return times, tops


def approx_rows(n, tokens, inv, ids, queries, exact_tops, a) -> None:
    """Build the approximate stage and print a row per (nprobe, tokens) with its recall@10."""
    import faiss
    faiss.omp_set_num_threads(a.threads)
    start = time.perf_counter()
    stage = build_stage(tokens, inv, MSC_BRANCHES)
    built = time.perf_counter() - start
    extra = sum(faiss.serialize_index(i).nbytes for i in stage.indexes.values()) / n
    index = SimpleNamespace(tokens=tokens, inv_norms=inv, ids=ids, row_video=torch.arange(n))
    per_video = bytes_per_video(tokens) + extra
    print(f"<!-- {stage.factory}: built in {built:.0f} s, {extra:.0f} bytes per video -->", flush=True)
    for nprobe in a.nprobe:
        for fetched in a.approx_tokens:
            top = lambda q: approx_top_k_rows(q, index, MSC_BRANCHES, WEIGHTS, 10, ranking, stage, fetched, nprobe)[0]  # noqa: E731
            times, tops = time_queries(top, queries, tokens)
            recall = np.mean([len(set(t) & set(e)) / len(e) for t, e in zip(tops, exact_tops)])
            print(row(f"approx top 10 ({stage.factory}, {fetched} tokens, nprobe {nprobe}); recall@10 "
                      f"{recall:.3f}", n, times, per_video), flush=True)


def int8_rows(n, tokens, inv, ids, queries, exact_tops) -> None:
    """Quantise the index (prvr.search.int8_scan) and print the int8 first pass's row: its top 10 must
    be the float16 pass's, and the videos it passes on to the float16 pass are counted."""
    index = SimpleNamespace(tokens=tokens, inv_norms=inv, ids=ids, row_video=torch.arange(n))
    start = time.perf_counter()
    scans = quantize_index(index, MSC_BRANCHES)
    built = time.perf_counter() - start
    top = lambda q: int8_top_k_rows(q, index, scans, MSC_BRANCHES, WEIGHTS, 10, ranking)[0]  # noqa: E731
    times, tops = time_queries(top, queries, tokens)
    if tops != exact_tops:
        raise SystemExit("the int8 first pass changed a top 10: a bug")
    passed = [len(int8_candidates(q, scans, MSC_BRANCHES, WEIGHTS, 10, index.row_video, n)) for q in queries]
    extra = sum(s.nbytes() for s in scans.values()) / n
    print(f"<!-- int8 copy: quantised in {built:.1f} s, +{extra / 1024:.0f} KB per video; videos passed to the "
          f"float16 pass: median {np.median(passed):.0f}, max {max(passed)}; same top 10 as float16: yes -->", flush=True)
    print(row("search top 10 (int8 first pass), float16 tokens", n, times, bytes_per_video(tokens) + extra), flush=True)


def bytes_per_video(tokens) -> float:
    return sum(t[0].numel() * t.element_size() for t in tokens.values()) + FRAME_TOKENS * 2 * 8


def row(label: str, n: int, times: list[float], bytes_per_video: float) -> str:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    return (f"| {label} | {n:,} | {np.median(times):.0f} | {np.percentile(times, 90):.0f} | "
            f"{bytes_per_video / 1024:.0f} | {rss:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--old", action="store_true", help="also the evaluation's function on float32 tokens (10k)")
    parser.add_argument("--tokens", choices=("random", "clustered"), default="random")
    parser.add_argument("--approx", action="store_true", help="also the approximate stage (faiss) and its recall@10")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[32])
    parser.add_argument("--approx-tokens", type=int, nargs="+", default=[256])
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 first pass's row")
    parser.add_argument("--no-every", action="store_true", help="skip the 'every score' row (10 s a query at 100k)")
    a = parser.parse_args()
    torch.set_num_threads(a.threads)
    info = machine()
    print(f"machine: {info['cpu']} ({info['cpu_capability']}), {a.threads} threads, torch {info['torch']}; "
          f"{a.tokens} tokens\n")
    print("| scoring | videos | median ms/query | p90 ms | KB per video | peak RSS GB |")
    print("|---|---|---|---|---|---|")
    for n in a.videos:
        tokens = clustered_index(n) if a.tokens == "clustered" else make_index(n)
        ids = [f"v{i:07d}" for i in range(n)]
        inv = {key: inverse_norms(t) for key, t in tokens.items()}
        per_video, queries = bytes_per_video(tokens), make_queries(a.tokens, a.queries, tokens)
        top = lambda q: exact_top_k(q, tokens, inv, MSC_BRANCHES, WEIGHTS, 10, ids, ranking)[0]  # noqa: E731
        times, exact_tops = time_queries(top, queries, tokens)
        print(row("search top 10 (exact_top_k), float16", n, times, per_video), flush=True)
        if not a.no_int8:
            int8_rows(n, tokens, inv, ids, queries, exact_tops)
        if not a.no_every:
            every = lambda q: ranking(index_scores(q, tokens, inv, MSC_BRANCHES, WEIGHTS)[0].numpy(), ids)[:10]  # noqa: E731
            print(row("every score (index_scores), float16", n, time_queries(every, queries, tokens)[0], per_video),
                  flush=True)
        if a.approx:
            approx_rows(n, tokens, inv, ids, queries, exact_tops, a)
        if a.old and n <= 20_000:
            full = {key: t.float() for key, t in tokens.items()}
            old = lambda q: ranking(model_scores.model_scores_chunked(q, full, MSC_BRANCHES, WEIGHTS)[0].numpy(),  # noqa: E731
                                    ids)[:10]
            print(row("model_scores_chunked, float32 tokens", n, time_queries(old, queries, full)[0],
                      2 * per_video), flush=True)
            del full
        del tokens, inv


if __name__ == "__main__":
    main()
