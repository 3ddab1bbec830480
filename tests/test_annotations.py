"""Annotation readers on excerpts of the real benchmark files, bad input, and MS-SL caption files.

Run: .venv/bin/python -m pytest tests/test_annotations.py -q
"""
from pathlib import Path

import pytest

from prvr.config import CorpusConfig
from prvr.errors import AnnotationError
from prvr.sources.annotations import Query, read_activitynet_json, read_annotations, read_charades_sta, read_tvr_jsonl
from prvr.store.splits import read_caption_txt, video_of, write_caption_txt
from prvr.demo.synthetic import generate_corpus

DATA = Path(__file__).parent / "data" / "annotations"


def test_tvr_excerpt_counts_ids_and_k_in_file_order():
    queries = read_tvr_jsonl(DATA / "tvr_val_excerpt.jsonl")
    assert len(queries) == 15
    assert len({q.vid for q in queries}) == 3
    first = queries[0]
    assert first == Query("friends_s01e03_seg02_clip_19", 61.46, 16.48, 33.87,
                          "Phoebe puts one of her ponytails in her mouth.", 90200,
                          "friends_s01e03_seg02_clip_19#enc#0")
    # k follows the rows' order in the release file, not the desc_id order
    friends = [(q.desc_id, q.caption_id.split("#enc#")[1]) for q in queries
               if q.vid == "friends_s01e03_seg02_clip_19"]
    assert friends == [(90200, "0"), (90202, "1"), (90201, "2"), (90203, "3"), (90204, "4")]
    sheldon = {q.desc_id: q.caption_id for q in queries if q.vid == "s02e14_seg02_clip_02"}
    assert sheldon[88606] == "s02e14_seg02_clip_02#enc#3"
    # trailing spaces of the release ("...on the couch. ") are normalised away
    assert all(q.desc == q.desc.strip() for q in queries)


def test_activitynet_excerpt_sentence_index_and_running_desc_id():
    queries = read_activitynet_json(DATA / "activitynet_val_1_excerpt.json")
    assert len(queries) == 2 + 3 + 3
    assert [q.caption_id for q in queries[:3]] == [
        "v_uqiMw7tQ1Cc#enc#0", "v_uqiMw7tQ1Cc#enc#1", "v_bXdq2zI1Ms0#enc#0"]
    assert [q.desc_id for q in queries] == list(range(8))
    second = queries[1]
    assert (second.duration, second.start, second.end) == (55.15, 13.79, 54.32)
    assert second.desc.startswith("The coach helps")          # leading spaces removed
    assert queries[-1].caption_id == "v_FsS_NCZEfaI#enc#2"


def test_activitynet_reversed_span_is_an_error_unless_fixed():
    path = DATA / "activitynet_train_reversed_span.json"
    with pytest.raises(AnnotationError, match=r"v_0bosp4-pyTM' sentence 3: start 61.29 >= end 60.71"):
        read_activitynet_json(path)
    fixed = read_activitynet_json(path, bad_spans="fix")
    assert (fixed[3].start, fixed[3].end) == (60.71, 61.29)
    assert len(fixed) == 10 and fixed[9].caption_id == "v_0bosp4-pyTM#enc#9"
    kept = read_activitynet_json(path, bad_spans="keep")
    assert (kept[3].start, kept[3].end) == (61.29, 60.71)


def test_charades_excerpt_positions_and_optional_durations():
    queries = read_charades_sta(DATA / "charades_sta_test_excerpt.txt")
    assert len(queries) == 12 and len({q.vid for q in queries}) == 6
    assert [q.caption_id for q in queries[:6]] == [
        "3MSZA#enc#0", "3MSZA#enc#1", "3MSZA#enc#2", "3MSZA#enc#3", "AMT7R#enc#0", "YVKIV#enc#0"]
    assert queries[7] == Query("VXJS4", None, 0.0, 4.0, "a person opens the door.", 7, "VXJS4#enc#1")
    durations = {q.vid: 40.0 for q in queries}
    assert {q.duration for q in read_charades_sta(DATA / "charades_sta_test_excerpt.txt", durations)} == {40.0}
    with pytest.raises(AnnotationError, match=r"excerpt.txt:1: no duration given for video '3MSZA'"):
        read_charades_sta(DATA / "charades_sta_test_excerpt.txt", durations={"AMT7R": 30.0})


def test_dispatch_and_unknown_format():
    assert len(read_annotations(DATA / "charades_sta_test_excerpt.txt", "charades")) == 12
    assert len(read_annotations(DATA / "tvr_val_excerpt.jsonl", "tvr")) == 15
    with pytest.raises(AnnotationError, match="unknown annotation format 'msrvtt'"):
        read_annotations(DATA / "tvr_val_excerpt.jsonl", "msrvtt")


GOOD = '{"vid_name": "v1", "duration": 10.0, "ts": [1.0, 2.0], "desc": "a cat.", "desc_id": 1}'


@pytest.mark.parametrize("bad_line, message", [
    ('{"vid_name": "v1", "duration": 10', "malformed JSON"),
    ('{"vid_name": "v1", "duration": 10.0, "desc": "x", "desc_id": 2}', "missing field 'ts'"),
    ('{"vid_name": "v1", "duration": 10.0, "ts": [5, 3], "desc": "x", "desc_id": 2}', "start 5.0 >= end 3.0"),
    ('{"vid_name": "v1", "duration": 10.0, "ts": [1], "desc": "x", "desc_id": 2}', "ts must be"),
    ('{"vid_name": "v1", "duration": "ten", "ts": [1, 2], "desc": "x", "desc_id": 2}', "duration must be a finite number"),
    ('{"vid_name": "v1", "duration": 10.0, "ts": [NaN, 1.75], "desc": "x", "desc_id": 2}', "ts must be a finite number, got nan"),
    ('{"vid_name": "v1", "duration": Infinity, "ts": [1, 2], "desc": "x", "desc_id": 2}', "duration must be a finite number"),
    ('{"vid_name": "v1", "duration": 10.0, "ts": [1, 50], "desc": "x", "desc_id": 2}', "end 50.0 is more than 0.1 s past the duration 10.0"),
    ('{"vid_name": "v1", "duration": 10.0, "ts": [3, 3], "desc": "x", "desc_id": 2}', "start 3.0 >= end 3.0"),
    ('{"vid_name": "v1", "duration": 10.0, "ts": [1, 2], "desc": "  ", "desc_id": 2}', "empty description"),
    ('{"vid_name": "v1", "duration": 10.0, "ts": [1, 2], "desc": "x", "desc_id": 1}', "duplicate desc_id 1"),
    ('{"vid_name": "v#1", "duration": 10.0, "ts": [1, 2], "desc": "x", "desc_id": 2}', "video id must be"),
    ('[1, 2]', "expected a JSON object"),
])
def test_tvr_malformed_line_names_file_and_line(tmp_path, bad_line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(GOOD + "\n\n" + bad_line + "\n")
    with pytest.raises(AnnotationError) as err:
        read_tvr_jsonl(path)
    text = str(err.value)
    assert text.startswith(f"{path}:3: ") and message in text and "\n" not in text


def test_charades_malformed_lines(tmp_path):
    path = tmp_path / "sta.txt"
    path.write_text("AAAAA 1.0 2.0##fine.\nBBBBB 1.0##no end time.\n")
    with pytest.raises(AnnotationError, match=r"sta.txt:2: expected 'VIDEO_ID START END##SENTENCE'"):
        read_charades_sta(path)
    path.write_text("AAAAA 1.0 x##bad number.\n")
    with pytest.raises(AnnotationError, match=r"sta.txt:1: start and end must be numbers"):
        read_charades_sta(path)


def test_activitynet_structural_errors(tmp_path):
    path = tmp_path / "anet.json"
    path.write_text('{"v_a": {"duration": 5.0, "timestamps": [[0, 1]], "sentences": []}}')
    with pytest.raises(AnnotationError, match="v_a': timestamps and sentences must be lists of equal length"):
        read_activitynet_json(path)
    path.write_text('{"v_a": {"duration": 5.0,\n "timestamps": [[0, 1]], }')
    with pytest.raises(AnnotationError, match=r"anet.json:2: malformed JSON"):
        read_activitynet_json(path)


def test_missing_file_and_bad_policy_are_one_line_errors(tmp_path):
    for reader in (read_tvr_jsonl, read_activitynet_json, read_charades_sta, read_caption_txt):
        with pytest.raises(AnnotationError, match=r"nope.txt: file not found$"):
            reader(tmp_path / "nope.txt")
    with pytest.raises(AnnotationError, match="bad_spans must be one of"):
        read_tvr_jsonl(DATA / "tvr_val_excerpt.jsonl", bad_spans="ignore")


def test_caption_txt_round_trip(tmp_path):
    queries = (read_tvr_jsonl(DATA / "tvr_val_excerpt.jsonl")
               + read_activitynet_json(DATA / "activitynet_val_1_excerpt.json"))
    path = tmp_path / "captions.txt"
    write_caption_txt(queries, path)
    lines = path.read_text().splitlines()
    assert lines[0] == "friends_s01e03_seg02_clip_19#enc#0 Phoebe puts one of her ponytails in her mouth."
    rows = read_caption_txt(path)
    assert rows == [(q.caption_id, q.desc) for q in queries]
    assert [video_of(cap_id) for cap_id, _ in rows] == [q.vid for q in queries]


@pytest.mark.parametrize("text, message", [
    ("v1#enc#0 ok\nv1#enc#x bad k\n", ":2: caption id must look like"),
    ("v1#enc#0 ok\nv1#enc#0 again\n", ":2: duplicate caption id 'v1#enc#0' (first at line 1)"),
    ("v1#enc#0\n", ":1: empty caption"),
])
def test_caption_txt_malformed(tmp_path, text, message):
    path = tmp_path / "c.txt"
    path.write_text(text)
    with pytest.raises(AnnotationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_caption_txt(path)


def test_demo_corpus_annotations_parse_as_tvr(tmp_path):
    cfg = CorpusConfig(seed=3, n_train=2, n_val=1, n_test=1, min_events=2, max_events=3,
                       event_seconds=(1.0, 1.5), fps=4, size=32)
    generate_corpus(cfg, tmp_path)
    for split, n_videos in (("train", 2), ("val", 1), ("test", 1)):
        queries = read_tvr_jsonl(tmp_path / "annotations" / f"{split}.jsonl")
        assert len({q.vid for q in queries}) == n_videos
        for q in queries:
            assert q.vid.startswith(f"demo_{split}_")
            assert 0 <= q.start < q.end <= q.duration
            assert q.caption_id.startswith(q.vid + "#enc#")


def test_a_video_in_two_splits_is_an_error_naming_both():
    from prvr.store.splits import check_disjoint_splits
    check_disjoint_splits({"train.jsonl": ["a", "b", "a"], "test.jsonl": ["c"]})  # repeats within a split are fine
    with pytest.raises(AnnotationError, match=r"^test.jsonl: video 'b' is also in train.jsonl \(2 videos in both\)"):
        check_disjoint_splits({"train.jsonl": ["a", "b", "d"], "val.jsonl": ["e"], "test.jsonl": ["b", "d", "f"]})


def test_video_list_refuses_overlapping_splits(tmp_path):
    import json

    from prvr.stages import shard_video_ids, video_list
    files = []
    for split, vids in (("train", ["v1", "v2"]), ("test", ["v3", "v2"])):
        path = tmp_path / f"{split}.jsonl"
        path.write_text("".join(json.dumps({"desc_id": i, "desc": f"a {vid}", "vid_name": vid, "duration": 10.0,
                                            "ts": [1.0, 2.0]}) + "\n" for i, vid in enumerate(vids)))
        files.append(path)
    with pytest.raises(AnnotationError, match=r"test.jsonl: video 'v2' is also in .*train.jsonl"):
        video_list(files, tmp_path / "videos.txt")
    files[1].write_text(files[1].read_text().replace('"v2"', '"v4"'))
    assert video_list(files, tmp_path / "videos.txt") == {"videos": 4, "listed": 4, "missing": 0}
    assert shard_video_ids(tmp_path / "videos.txt", 1, 3) == ["v4"]


@pytest.mark.parametrize("vid", ["../escape", "a/b", "..", ".hidden", "a\\b"])
def test_an_id_that_is_a_path_is_refused_with_one_line(tmp_path, vid):
    """Ids become file names (features, frames, downloads): a '/' or '..' would write outside."""
    import json

    tvr = tmp_path / "tvr.jsonl"
    tvr.write_text(json.dumps({"vid_name": vid, "duration": 10.0, "ts": [1.0, 2.0], "desc": "a man",
                               "desc_id": 1}) + "\n")
    with pytest.raises(AnnotationError, match=rf"{tvr}:1: video id .* is not a file name"):
        read_tvr_jsonl(tvr)
    sta = tmp_path / "sta.txt"
    sta.write_text(f"{vid} 1.0 2.0##a man\n")
    with pytest.raises(AnnotationError, match=rf"{sta}:1: video id .* is not a file name"):
        read_charades_sta(sta)
    captions = tmp_path / "c.caption.txt"
    captions.write_text(f"{vid}#enc#0 a man\n")
    with pytest.raises(AnnotationError, match=rf"{captions}:1: video id .* is not a file name"):
        read_caption_txt(captions)


def test_a_duplicate_key_in_one_json_row_is_an_error(tmp_path):
    tvr = tmp_path / "tvr.jsonl"
    tvr.write_text('{"vid_name": "v1", "duration": 10.0, "ts": [1.0, 2.0], "ts": [3.0, 4.0], '
                   '"desc": "a man", "desc_id": 1}\n')
    with pytest.raises(AnnotationError, match=rf"{tvr}:1: duplicate key 'ts'"):
        read_tvr_jsonl(tvr)
    anet = tmp_path / "val.json"
    anet.write_text('{"v_a": {"duration": 5.0, "timestamps": [[0, 1]], "sentences": ["x"], "duration": 6.0}}')
    with pytest.raises(AnnotationError, match="duplicate key 'duration'"):
        read_activitynet_json(anet)
