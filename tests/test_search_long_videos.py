"""prvr.search on a generated long video (demo clips played one after another, prvr.demo.long_videos)
beside two short clips, with an untrained model and a random tiny CLIP: the windows cover the long
video, its score is the max over its windows encoded and scored as separate videos (the evaluation's
score function), hits report moments in the long video's seconds, short videos are unchanged by the
option, resume skips an unchanged long video, other settings cannot extend an index, an index from
before windows loads and extends, the CLI and prvr.search.measure take windows, and
bench/bench_long_videos.py runs (--small)."""
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import bench_long_videos
from prvr.cli import main
from prvr.config import Config, CorpusConfig, merge, to_dict
from prvr.demo.long_videos import clip_frames_from, generate_clips, plan_long_videos, write_long_video
from prvr.errors import PrvrError
from prvr.evaluation import model_scores
from prvr.features.clip import load_clip
from prvr.models import create_model
from prvr.search import Searcher, index_videos
from prvr.search.measure import measure
from prvr.search.moments import best_moment, token_spans
from prvr.search.page import results_page
from prvr.search.windows import window_frames, window_spans, window_starts
from prvr.video.decoding import decode_at_times, decode_video

CORPUS = CorpusConfig(seed=5, n_train=0, n_val=0, n_test=12, min_events=2, max_events=3,
                      event_seconds=(1.0, 2.0), fps=6, size=40)
REPO = Path(__file__).resolve().parents[1]
WINDOWS = {"long_after": 20.0, "window": 8.0, "stride": 4.0}  # fps 3: 24 frames a window, 32 tokens


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """videos/: one long video (~45 s of clips) and two short clips; a model.pt; its windowed index."""
    root = tmp_path_factory.mktemp("long")
    clips, clip_rows = generate_clips(CORPUS, CORPUS.n_test, root / "clips")
    seconds = [f / CORPUS.fps for f in clip_frames_from(CORPUS, 0, CORPUS.n_test)]
    plan = plan_long_videos(seconds, 45.0, 1)[0]
    rows = write_long_video([clips[i] for i in plan], [clip_rows[clips[i].stem] for i in plan],
                            root / "videos/long.mp4", "long", CORPUS.fps)
    for clip in clips[-2:]:
        shutil.copyfile(clip, root / "videos" / clip.name)
    torch.manual_seed(0)
    clip = load_clip("prvr-tiny-clip", None, allow_random=True)
    torch.save(clip.model.state_dict(), root / "clip.pt")
    cfg = merge(Config(), {"clip": {"pretrained": str(root / "clip.pt")}, "frames": {"fps": 3.0}})
    torch.save({"config": to_dict(cfg), "model": create_model(cfg.model).state_dict(), "seed": 0}, root / "model.pt")
    index_videos(root / "videos", root / "model.pt", root / "index32", dtype="float32", **WINDOWS)
    return root, rows, [clip_rows[c.stem] for c in clips[-2:]], [clips[i] for i in plan]


def test_the_long_video_is_its_clips_with_shifted_captions(setup):
    root, rows, _, clips = setup
    frames = [len(decode_video(c)) for c in clips]
    assert len(decode_video(root / "videos/long.mp4")) == sum(frames)
    assert rows[0]["duration"] == sum(frames) / CORPUS.fps
    first = json.loads((root / "clips/annotations/test.jsonl").read_text().splitlines()[0])  # clip 0's first event
    assert rows[0]["ts"] == first["ts"] and rows[0]["desc"] == first["desc"]
    shifted = [r for r in rows if r["ts"][0] >= frames[0] / CORPUS.fps][0]  # clip 1's first event
    assert shifted["ts"][0] >= frames[0] / CORPUS.fps and shifted["ts"][1] <= (frames[0] + frames[1]) / CORPUS.fps


def test_windows_cover_the_long_video_and_short_ones_keep_one_row(setup):
    root, *_ = setup
    index = Searcher(root / "index32").index
    assert index.manifest["format"] == "prvr-search-index/2" and index.manifest["windows"]["fps"] == 3.0
    long = index.ids.index("long")
    entry, duration = index.manifest["videos"]["long"], index.durations[long]
    starts = window_starts(duration, 8.0, 4.0)
    assert entry["windows"] == [[s, min(s + 8.0, duration)] for s in starts.tolist()]
    rows = index.rows_of(long)
    frames = window_frames(entry["n_frames"], duration, starts, 8.0)
    for row, (j0, j1) in zip(rows, frames):
        np.testing.assert_allclose(index.spans[row], window_spans(j0, j1, duration / entry["n_frames"], 32))
    assert index.spans[rows[0], 0, 0] == 0 and np.isclose(index.spans[rows[-1], -1, 1], duration)
    assert entry["n_frames"] == round(duration * 3.0)  # every frame at the windows' rate, no max_frames cap
    for vid in index.ids:
        if vid != "long":
            assert len(index.rows_of(index.ids.index(vid))) == 1 and "windows" not in index.manifest["videos"][vid]


def test_scores_are_the_max_over_windows_encoded_and_scored_as_videos(setup):
    root, rows, *_ = setup
    searcher = Searcher(root / "index32")
    enc, long = searcher.encoder, searcher.index.ids.index("long")
    feats = enc.frame_features(root / "videos/long.mp4", 3.0)  # (T, D)
    duration = searcher.index.durations[long]
    windows = [enc.encode_frames(feats[j0:j1])  # each window on its own, a batch of one
               for j0, j1 in window_frames(len(feats), duration, window_starts(duration, 8.0, 4.0), 8.0)]
    videos = {key: torch.from_numpy(np.stack([w[key] for w in windows])) for key in enc.video_keys()}  # (W, N, H)
    queries = enc.encode_queries([r["desc"] for r in rows[:12]])
    weights = (enc.cfg.eval.w_clip, enc.cfg.eval.w_frame)
    separate = model_scores.model_scores_chunked(queries, videos, enc.branches, weights)  # (Q, W)
    got = searcher.scores(queries)[:, long]
    np.testing.assert_allclose(got, separate.max(dim=1).values.numpy(), atol=1e-5, rtol=0)
    for key in enc.video_keys():  # the index's rows: the windows encoded in batches, same numbers
        np.testing.assert_allclose(searcher.index.tokens[key][searcher.index.rows_of(long)].numpy(),
                                   videos[key].numpy(), atol=1e-5, rtol=0)


def test_hits_report_the_moment_of_the_best_window_in_the_long_videos_time(setup):
    root, rows, *_ = setup
    searcher = Searcher(root / "index32")
    index, long = searcher.index, searcher.index.ids.index("long")
    entry, duration = index.manifest["videos"]["long"], index.durations[long]
    frames = window_frames(entry["n_frames"], duration, window_starts(duration, 8.0, 4.0), 8.0)
    bin_len, moved = duration / entry["n_frames"], 0
    for row in rows[:10]:
        encoded = searcher.encode([row["desc"]])
        hits = searcher.search(row["desc"], k=3)
        assert [h.video for h in hits][:3] == [index.ids[v] for v in np.argsort(-searcher.scores(encoded)[0],
                                                                                  kind="stable")][:3]
        hit = next(h for h in hits if h.video == "long")
        row_scores = searcher.row_scores(encoded)[0, index.rows_of(long)]
        best = int(np.argmax(row_scores.numpy()))  # the first best window
        assert hit.window == tuple(entry["windows"][best]) and np.isclose(hit.score, float(row_scores[best]))
        j0, j1 = frames[best]
        sims = searcher.frame_similarities(encoded, [index.rows_of(long)[best]])[0, 0]
        local = best_moment(sims, token_spans(j1 - j0, (j1 - j0) * bin_len, 32))  # the window seen as a video
        assert (hit.start, hit.end) == pytest.approx((local[0] + j0 * bin_len, local[1] + j0 * bin_len))
        assert hit.window[0] - bin_len <= hit.start < hit.end <= min(hit.window[1] + bin_len, duration) + 1e-9
        moved += hit.window[0] > 0
        short = next(h for h in hits if h.video != "long")
        assert short.window is None
    assert moved  # some hits come from a window after the first: the offset is exercised


def test_a_short_video_is_unchanged_by_the_option(setup, tmp_path):
    root, *_ = setup
    off = index_videos(root / "videos", root / "model.pt", tmp_path / "off", dtype="float32", long_after="off")
    assert off["indexed"] == 3
    windowed, plain = Searcher(root / "index32").index, Searcher(tmp_path / "off").index
    assert plain.manifest["format"] == "prvr-search-index/1" and plain.manifest["windows"] is None
    assert len(plain.row_video) == 3 and "windows" not in plain.manifest["videos"]["long"]
    for vid in windowed.ids:
        if vid == "long":
            continue
        a, b = windowed.rows_of(windowed.ids.index(vid))[0], plain.rows_of(plain.ids.index(vid))[0]
        for key in windowed.tokens:
            np.testing.assert_array_equal(windowed.tokens[key][a].numpy(), plain.tokens[key][b].numpy())
        np.testing.assert_array_equal(windowed.spans[a], plain.spans[b])
        drop = ("shard", "row")
        assert ({k: v for k, v in windowed.manifest["videos"][vid].items() if k not in drop}
                == {k: v for k, v in plain.manifest["videos"][vid].items() if k not in drop})


def test_resume_skips_an_unchanged_long_video_and_other_settings_cannot_extend(setup, tmp_path):
    root, *_ = setup
    shutil.copytree(root / "index32", tmp_path / "index")
    shutil.copytree(root / "videos", tmp_path / "videos")
    before = json.loads((tmp_path / "index/index.json").read_text())
    again = index_videos(tmp_path / "videos", root / "model.pt", tmp_path / "index", dtype="float32")  # its settings
    assert (again["indexed"], again["changed"], again["unchanged"]) == (0, 0, 3)
    after = json.loads((tmp_path / "index/index.json").read_text())["videos"]
    for vid, entry in after.items():  # the same rows; the entry names the copy it was found as
        assert entry.pop("file") == str((tmp_path / "videos" / Path(before["videos"][vid]["file"]).name).resolve())
        before["videos"][vid].pop("file")
    assert after == before["videos"]
    for other in ({"window": 10.0}, {"long_after": "off"}, {**WINDOWS, "stride": 8.0}):
        with pytest.raises(PrvrError, match="built with another windows") as err:
            index_videos(tmp_path / "videos", root / "model.pt", tmp_path / "index", dtype="float32", **other)
        assert "\n" not in str(err.value)
    assert index_videos(tmp_path / "videos", root / "model.pt", tmp_path / "index", dtype="float32",
                        **WINDOWS)["unchanged"] == 3  # the same settings, given again
    shutil.copyfile(tmp_path / "videos/long.mp4", tmp_path / "videos/long2.mp4")  # a new long video
    added = index_videos(tmp_path / "videos", root / "model.pt", tmp_path / "index", dtype="float32")
    assert (added["indexed"], added["unchanged"]) == (1, 3)
    index = Searcher(tmp_path / "index").index
    a, b = (index.rows_of(index.ids.index(v)) for v in ("long", "long2"))
    np.testing.assert_array_equal(index.tokens["frame_tokens"][a].numpy(), index.tokens["frame_tokens"][b].numpy())


def test_an_index_from_before_windows_loads_searches_and_extends(setup, tmp_path):
    root, rows, short_rows, _ = setup
    index_videos(root / "videos", root / "model.pt", tmp_path / "old", long_after="off")
    manifest = json.loads((tmp_path / "old/index.json").read_text())
    del manifest["windows"]  # as prvr wrote it before windows existed
    (tmp_path / "old/index.json").write_text(json.dumps(manifest))
    hits = Searcher(tmp_path / "old").search(short_rows[0][0]["desc"], k=3)
    assert len(hits) == 3 and all(h.window is None for h in hits)
    assert index_videos(root / "videos", root / "model.pt", tmp_path / "old")["unchanged"] == 3
    assert json.loads((tmp_path / "old/index.json").read_text())["format"] == "prvr-search-index/1"
    with pytest.raises(PrvrError, match="built with another windows"):
        index_videos(root / "videos", root / "model.pt", tmp_path / "old", **WINDOWS)


def test_cli_takes_the_window_options_and_prints_the_window(setup, tmp_path, capsys):
    root, rows, *_ = setup
    flags = ["--long-after", "20", "--window", "8", "--stride", "4"]
    assert main(["index", str(root / "videos"), "--model", str(root / "model.pt"), "--out", str(tmp_path / "i"),
                 *flags]) == 0
    capsys.readouterr()
    assert main(["search", str(tmp_path / "i"), rows[3]["desc"], "-k", "3", "--json"]) == 0
    hits = {h["video"]: h for h in json.loads(capsys.readouterr().out)}
    assert len(hits["long"]["window"]) == 2 and all(h["window"] is None for v, h in hits.items() if v != "long")
    assert main(["search", str(tmp_path / "i"), rows[3]["desc"], "-k", "3"]) == 0
    assert "(window " in capsys.readouterr().out
    for bad, words in ((["--stride", "0"], "stride"), (["--long-after", "soon"], "long_after"),
                       (["--window", "30"], "long_after (20 s) must be at least the window (30 s)")):
        assert main(["index", str(root / "videos"), "--model", str(root / "model.pt"), "--out", str(tmp_path / "j"),
                     "--long-after", "20", *bad]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("prvr: error: index: ") and words in err[0], err


def test_measure_finds_moments_in_each_captions_best_window(setup):
    root, rows, short_rows, _ = setup
    searcher = Searcher(root / "index32")  # float32: measure's and search's scores are the same numbers
    queries = rows[:8] + [r for clip in short_rows for r in clip]
    got = measure(searcher, queries)
    ranks, pred = [], []
    for row in queries:
        hits = searcher.search(row["desc"], k=3)
        own = next(h for h in hits if h.video == row["vid_name"])
        ranks.append(own.rank)
        pred.append((own.start, own.end))
    assert got["R@1"] == pytest.approx(100 * np.mean(np.array(ranks) == 1))
    iou = [max(0.0, min(e, t[1]) - max(s, t[0])) / (max(e, t[1]) - min(s, t[0]))
           for (s, e), t in zip(pred, [r["ts"] for r in queries])]
    assert got["ratio 0.5"]["mean_iou"] == pytest.approx(np.mean(iou))


def test_the_bench_runs_small(setup, tmp_path, capsys):
    root, *_ = setup
    report = bench_long_videos.main(["--model", str(root / "model.pt"), "--small", "--out", str(tmp_path / "out")])
    assert sorted(report["results"]) == ["0.5", "1"]
    for result in report["results"].values():
        assert result["windows"]["rows"] > result["whole"]["rows"] == result["whole"]["videos"] == 3
        assert result["windows"]["windows"]["long_after"] == 20.0 and result["whole"]["windows"] is None
        assert 0 <= result["windows"]["in_best_window"] <= 100 and result["whole"]["in_best_window"] is None
    assert json.loads((tmp_path / "out/long_videos.json").read_text())["results"] == report["results"]
    assert (tmp_path / "out/long_videos.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 1 min | 3 |" in capsys.readouterr().out
    again = bench_long_videos.main(["--model", str(root / "model.pt"), "--small", "--reuse",
                                    "--out", str(tmp_path / "out")])
    def numbers(rep):
        return {n: {v: {k: x for k, x in r.items() if k != "measure_seconds"} for v, r in by.items()}
                for n, by in rep["results"].items()}
    assert numbers(again) == numbers(report)  # the same indexes measured again, their indexing time kept


def test_the_page_shows_frames_from_inside_the_window_of_a_long_hit(setup, tmp_path):
    root, rows, *_ = setup
    hit = next(h for h in Searcher(root / "index32").search(rows[-1]["desc"], k=3) if h.video == "long")
    page = results_page([hit], rows[-1]["desc"], thumbs=4)
    titles = [float(t) for t in re.findall(r'title="([0-9.]+) s"', page)]
    assert titles and all(hit.start - 1 <= t <= hit.end + 1 for t in titles), (titles, hit)
    times = np.array([1.0, 2.0])
    np.testing.assert_array_equal(decode_at_times(root / "videos/long.mp4", times, size=32),
                                  decode_video(root / "videos/long.mp4", size=32)[(times * CORPUS.fps).astype(int)])


def test_the_docs_window_commands_run_as_written(setup, tmp_path, capsys):
    """docs/search.md's `prvr index` lines with window options, on this module's videos and model."""
    root, *_ = setup
    text = (REPO / "docs/search.md").read_text().split("## Long videos")[1]
    commands = [line.split("#")[0].split() for line in text.splitlines() if line.startswith("    prvr index ")]
    assert len(commands) == 2
    places = {"my_videos/": str(root / "videos"), "model.pt": str(root / "model.pt")}
    for n, argv in enumerate(commands):
        argv = [places.get(arg, str(tmp_path / f"index{n}") if arg == "my_index" else arg) for arg in argv[1:]]
        assert main(argv) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "index0/index.json").read_text())["windows"]["window"] == 60.0
    assert json.loads((tmp_path / "index1/index.json").read_text())["windows"] is None
