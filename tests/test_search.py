"""prvr.search: index generated videos with an untrained model and a random tiny CLIP, search them;
the scores are the evaluation's, the index resumes and notices changed files, broken files and
missing models are one line, and the moment arithmetic is right on hand-computed cases."""
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from prvr.cli import main
from prvr.config import Config, CorpusConfig, merge, to_dict
from prvr.data.dataset import PRVRDataset
from prvr.demo.synthetic import generate_corpus
from prvr.evaluation.evaluate import split_scores
from prvr.features.clip import load_clip
from prvr.features.extract import extract_text_features, extract_video_features
from prvr.models import create_model
from prvr.search import Searcher, index_videos, search
from prvr.search.moments import agreement, best_moment, centred_windows, temporal_iou, token_spans
from prvr.search.searcher import ranking
from prvr.video.video_files import video_files

CORPUS = CorpusConfig(seed=5, n_train=0, n_val=0, n_test=3, min_events=2, max_events=3,
                      event_seconds=(1.0, 2.0), fps=6, size=40)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Three generated videos with their captions, CLIP weights and a model.pt naming them."""
    root = tmp_path_factory.mktemp("search")
    generate_corpus(CORPUS, root / "corpus")
    shutil.copytree(root / "corpus" / "videos", root / "videos")
    torch.manual_seed(0)
    clip = load_clip("prvr-tiny-clip", None, allow_random=True)
    torch.save(clip.model.state_dict(), root / "clip.pt")
    cfg = merge(Config(), {"clip": {"pretrained": str(root / "clip.pt")}, "frames": {"fps": 3.0}})
    torch.save({"config": to_dict(cfg), "model": create_model(cfg.model).state_dict(), "seed": 0}, root / "model.pt")
    rows = [json.loads(line) for line in (root / "corpus/annotations/test.jsonl").read_text().splitlines()]
    captions = {f"{r['vid_name']}#enc#{r['desc_id']}": r["desc"] for r in rows}
    index_videos(root / "videos", root / "model.pt", root / "index32", dtype="float32")
    return root, cfg, captions


def _evaluation_scores(root, cfg, captions):
    """The evaluation's (Q, V) scores on the pipeline's own feature files for these videos."""
    clip = load_clip("prvr-tiny-clip", cfg.clip.pretrained)
    vids = sorted({c.split("#")[0] for c in captions})
    extract_video_features(video_files(root / "videos", vids), clip, cfg.frames, root / "v.h5")
    extract_text_features(captions, clip, root / "t.h5")
    (root / "test.caption.txt").write_text("".join(f"{c} {t}\n" for c, t in captions.items()))
    model = create_model(cfg.model)
    model.load_state_dict(torch.load(root / "model.pt", weights_only=False)["model"])
    dataset = PRVRDataset.for_model(root / "test.caption.txt", root / "v.h5", root / "t.h5", cfg.model)
    scores, _ = split_scores(model.eval(), dataset, cfg.eval)
    return scores, dataset.index.videos


def test_scores_are_the_evaluations_and_ranks_follow_them(setup, tmp_path):
    root, cfg, captions = setup
    expected, videos = _evaluation_scores(root, cfg, captions)
    searcher, texts = Searcher(root / "index32"), list(captions.values())
    assert searcher.index.ids == sorted(videos)
    got = searcher.scores(searcher.encode(texts))[:, [searcher.index.ids.index(v) for v in videos]]
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    for row, text in enumerate(texts):
        hits = searcher.search(text, k=2)
        assert [h.video for h in hits] == [videos[i] for i in ranking(expected[row], videos)][:2]
        assert all(0 <= h.start < h.end <= h.duration + 1e-9 for h in hits)
    index_videos(root / "videos", root / "model.pt", tmp_path / "index16")  # float16, the default
    half = Searcher(tmp_path / "index16")
    np.testing.assert_allclose(half.scores(half.encode(texts)), searcher.scores(searcher.encode(texts)),
                               atol=5e-3, rtol=0)


def test_resume_skips_unchanged_and_reindexes_a_changed_file(setup, tmp_path):
    root, _, _ = setup
    videos = tmp_path / "videos"
    shutil.copytree(root / "videos", videos)
    first = index_videos(videos, root / "model.pt", tmp_path / "index", dtype="float32")
    again = index_videos(videos, root / "model.pt", tmp_path / "index", dtype="float32")
    assert (first["indexed"], again["indexed"], again["unchanged"], again["changed"]) == (3, 0, 3, 0)
    shutil.copyfile(videos / "demo_test_0000.mp4", videos / "demo_test_0002.mp4")  # new content
    changed = index_videos(videos, root / "model.pt", tmp_path / "index", dtype="float32")
    assert (changed["changed"], changed["unchanged"], changed["total_indexed"]) == (1, 2, 3)
    index = Searcher(tmp_path / "index").index
    for key, tokens in index.tokens.items():
        np.testing.assert_array_equal(tokens[2].numpy(), tokens[0].numpy(), err_msg=key)
    shards = sorted(p.name for p in (tmp_path / "index").glob("shard_*.h5"))
    assert shards == sorted({e["shard"] for e in index.manifest["videos"].values()})


def test_a_deleted_video_leaves_the_index_and_a_moved_one_is_followed(setup, tmp_path, capsys):
    """Re-indexing drops a video whose indexed file is gone (one line, counted); a video of another
    folder of the same index stays; an unchanged video found under a new path keeps its rows and its
    entry names the new file."""
    root, _, _ = setup
    videos, other = tmp_path / "videos", tmp_path / "other"
    shutil.copytree(root / "videos", videos)
    other.mkdir()
    shutil.move(videos / "demo_test_0002.mp4", other / "extra.mp4")
    index_videos(videos, root / "model.pt", tmp_path / "index", dtype="float32")
    index_videos(other, root / "model.pt", tmp_path / "index", dtype="float32")  # a second folder
    assert Searcher(tmp_path / "index").index.ids == ["demo_test_0000", "demo_test_0001", "extra"]
    (videos / "demo_test_0001.mp4").unlink()
    capsys.readouterr()
    again = index_videos(videos, root / "model.pt", tmp_path / "index", dtype="float32")
    assert (again["removed"], again["unchanged"], again["total_indexed"]) == (1, 1, 2)
    lines = [line for line in capsys.readouterr().err.splitlines() if "dropped" in line]
    assert len(lines) == 1 and "demo_test_0001" in lines[0] and "no longer exists" in lines[0]
    assert Searcher(tmp_path / "index").index.ids == ["demo_test_0000", "extra"]  # extra's file is there
    assert {hit.video for hit in search(tmp_path / "index", "a red circle", k=5)} == {"demo_test_0000", "extra"}
    moved = tmp_path / "moved"
    shutil.move(videos, moved)
    after = index_videos(moved, root / "model.pt", tmp_path / "index", dtype="float32")
    assert (after["unchanged"], after["removed"], after["indexed"]) == (1, 0, 0)
    entry = json.loads((tmp_path / "index/index.json").read_text())["videos"]["demo_test_0000"]
    assert entry["file"] == str((moved / "demo_test_0000.mp4").resolve())


def test_frame_folders_index_as_their_videos(setup, tmp_path):
    """`prvr index --frame-folders FPS`: a folder of each video's frames (lossless PNG, shown at the
    video's own rate) is indexed like the video: the same durations and token spans, tokens equal to
    CLIP's rounding of the two resize paths, the same ranking; the entry records the rate, the page
    shows its frames, and re-indexing the folders skips them. (The tokens differ by the two resize paths:
    the video decoder's and PIL's bicubic on the PNGs.)"""
    from prvr.search import write_results_page
    from prvr.video.decoding import decode_video, video_info
    root, _, captions = setup
    frames_dir = tmp_path / "frames"
    for video in sorted((root / "videos").glob("*.mp4")):
        folder = frames_dir / video.stem
        folder.mkdir(parents=True)
        for k, frame in enumerate(decode_video(video)):  # every frame, native size
            Image.fromarray(frame).save(folder / f"{k + 1:05d}.png")
    fps = video_info(next((root / "videos").glob("*.mp4")))["fps"]
    assert main(["index", str(frames_dir), "--model", str(root / "model.pt"), "--out", str(tmp_path / "index"),
                 "--frame-folders", str(fps)]) == 0
    folders, videos = Searcher(tmp_path / "index"), Searcher(root / "index32")
    assert folders.index.ids == videos.index.ids
    np.testing.assert_allclose(folders.index.durations, videos.index.durations, rtol=0, atol=1e-5)  # time base
    np.testing.assert_allclose(folders.index.spans, videos.index.spans, rtol=0, atol=1e-5)
    for key in videos.index.tokens:
        np.testing.assert_allclose(folders.index.tokens[key].float().numpy(), videos.index.tokens[key].numpy(),
                                   atol=0.02, rtol=0, err_msg=key)  # measured: <= 0.006
    entry = folders.index.manifest["videos"]["demo_test_0000"]
    assert entry["folder_fps"] == fps and entry["file"] == str((frames_dir / "demo_test_0000").resolve())
    text = next(iter(captions.values()))
    texts = list(captions.values())
    np.testing.assert_allclose(folders.scores(folders.encode(texts)), videos.scores(videos.encode(texts)),
                               atol=2e-3, rtol=0)  # measured: <= 3e-4; an untrained model's near ties swap ranks
    hits = folders.search(text, k=3)
    assert hits[0].folder_fps == fps and 0 <= hits[0].start < hits[0].end <= hits[0].duration + 1e-9
    page = write_results_page(hits, text, tmp_path / "hits.html").read_text()
    assert page.count("data:image/jpeg;base64,") >= 3 and "frames unavailable" not in page
    again = index_videos(frames_dir, root / "model.pt", tmp_path / "index", folder_fps=fps)
    assert (again["unchanged"], again["indexed"], again["changed"]) == (3, 0, 0)


def test_a_corrupt_file_is_listed_and_skipped_with_one_line(setup, tmp_path, capsys):
    root, _, _ = setup
    videos = tmp_path / "videos"
    shutil.copytree(root / "videos", videos)
    (videos / "broken.mp4").write_bytes(b"\x00not a video" * 50)
    done = index_videos(videos, root / "model.pt", tmp_path / "index", workers=2)
    assert done["indexed"] == 3 and list(done["broken"]) == [str(videos / "broken.mp4")]
    lines = [line for line in capsys.readouterr().err.splitlines() if "skipped" in line]
    assert len(lines) == 1 and "broken.mp4" in lines[0]
    assert "broken" not in json.loads((tmp_path / "index/index.json").read_text())["videos"]


def test_missing_model_and_index_are_one_line(setup, tmp_path, capsys):
    root, _, _ = setup
    assert main(["index", str(root / "videos"), "--model", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "i")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"prvr: error: {tmp_path / 'nope.pt'}: model file not found"]
    assert main(["search", str(tmp_path / "no_index"), "a query"]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_another_model_cannot_extend_an_index(setup, tmp_path, capsys):
    root, cfg, _ = setup
    other = merge(cfg, {"eval": {"w_clip": 0.5, "w_frame": 0.5}})
    torch.save({"config": to_dict(other), "model": create_model(other.model).state_dict(), "seed": 1},
               tmp_path / "other.pt")
    shutil.copytree(root / "index32", tmp_path / "index")
    assert main(["index", str(root / "videos"), "--model", str(tmp_path / "other.pt"),
                 "--out", str(tmp_path / "index")]) == 1
    assert "built with another model.sha256" in capsys.readouterr().err


def test_cli_search_prints_hits_and_json(setup, capsys):
    root, _, captions = setup
    text = next(iter(captions.values()))
    assert main(["search", str(root / "index32"), text, "-k", "2", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [h["rank"] for h in hits] == [1, 2]
    assert [h["video"] for h in hits] == [h.video for h in search(root / "index32", text, k=2)]
    assert main(["search", str(root / "index32"), text, "-k", "1"]) == 0
    assert capsys.readouterr().out.split()[:2] == ["1", hits[0]["video"]]


def test_token_spans_follow_the_frame_bins_and_the_resampling():
    # 4 frames over 8 s: bins of 2 s; 2 tokens: frames 0-1, then frame 2 alone (the authors' resampling
    # clamps the last edge to T - 1 = 3, so frame 3 is never used)
    np.testing.assert_allclose(token_spans(4, 8.0, 2), [[0, 4], [4, 6]])
    # 2 frames, 4 tokens: edges round(i * 2 / 4) = 0, 0(0.5 -> 0), 1, 1(1.5 -> 2, clamped to 1), 1
    np.testing.assert_allclose(token_spans(2, 10.0, 4), [[0, 5], [0, 5], [5, 10], [5, 10]])


def test_best_moment_extends_around_the_peak():
    spans = np.array([[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]], dtype=float)
    # floor 0, peak 1.0 at token 2, threshold 0.5: tokens 1..3
    assert best_moment(np.array([0.3, 0.5, 1.0, 0.7, 0.0]), spans) == (1.0, 4.0)
    assert best_moment(np.array([0.3, 0.5, 1.0, 0.7, 0.0]), spans, ratio=0.8) == (2.0, 3.0)
    # token 0 is above the threshold but cut off from the peak by token 1
    assert best_moment(np.array([0.6, 0.4, 1.0, 0.7, 0.0]), spans) == (2.0, 4.0)
    # floor -0.2, peak 0.8: threshold 0.3 keeps tokens 2..4
    assert best_moment(np.array([-0.2, 0.2, 0.8, 0.3, 0.31]), spans) == (2.0, 5.0)
    assert best_moment(np.zeros(5), spans) == (0.0, 5.0)  # flat: the whole video
    assert best_moment(np.array([0.9, 0.9, 0.1, 0.1, 0.1]), spans) == (0.0, 2.0)


def test_iou_agreement_and_baseline_on_hand_computed_cases():
    pred = np.array([[0, 2], [1, 3], [5, 6], [0, 4]], dtype=float)
    truth = np.array([[0, 2], [2, 4], [0, 1], [1, 2]], dtype=float)
    np.testing.assert_allclose(temporal_iou(pred, truth), [1.0, 1 / 3, 0.0, 0.25])
    assert temporal_iou(np.array([[1, 1]]), np.array([[1, 1]]))[0] == 0.0
    out = agreement(pred, truth)
    assert out["mean_iou"] == pytest.approx((1 + 1 / 3 + 0 + 0.25) / 4) and out["hit@0.5"] == 0.25
    np.testing.assert_allclose(centred_windows(np.array([10.0, 2.0]), 4.0), [[3, 7], [0, 2]])


def test_cli_approx_search_ranks_as_exact_on_a_small_index(setup, tmp_path, capsys):
    pytest.importorskip("faiss")
    root, _, captions = setup
    shutil.copytree(root / "index32", tmp_path / "index")
    text = next(iter(captions.values()))
    assert main(["search", str(tmp_path / "index"), text, "-k", "3", "--json", "--approx"]) == 0
    approx_hits = json.loads(capsys.readouterr().out)
    assert approx_hits == [h.to_dict() for h in search(tmp_path / "index", text, k=3)]  # a flat stage, every token
    assert json.loads((tmp_path / "index/approx/approx.json").read_text())["factory"] == "Flat"
    assert main(["search", str(tmp_path / "index"), text, "--approx", "--nprobe", "0"]) == 1
    assert "must be >= 1" in capsys.readouterr().err


def test_cli_int8_and_float16_scans_give_the_same_hits(setup, tmp_path, capsys):
    root, _, captions = setup
    index_videos(root / "videos", root / "model.pt", tmp_path / "index")  # float16: the int8 pass applies
    assert Searcher(tmp_path / "index", scan="int8").scans is not None
    assert Searcher(tmp_path / "index", scan="float16").scans is None
    for text in list(captions.values())[:3]:
        assert main(["search", str(tmp_path / "index"), text, "-k", "2", "--json", "--scan", "int8"]) == 0
        int8_hits = json.loads(capsys.readouterr().out)
        assert int8_hits == [h.to_dict() for h in search(tmp_path / "index", text, k=2, scan="float16")]
