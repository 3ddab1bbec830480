"""Benchmark annotations as one common table of queries (written as MS-SL caption files by
prvr.store.splits).

Readers for TVR (jsonl, also the demo corpus), ActivityNet Captions (json), Charades-STA (txt) and
QVHighlights (moment_detr's jsonl);
each returns `Query` rows in file order. caption_id = f"{vid}#enc#{k}" where k is, for TVR, the
query's position among that video's rows; for ActivityNet, the sentence index; for Charades-STA,
the position among that video's lines. Descriptions are whitespace-normalised (one line).

    queries = read_annotations("tvr_val_release.jsonl", "tvr")
    write_caption_txt(queries, "tvr_test.caption.txt")   # prvr.store.splits: "<vid>#enc#<k> <caption>"

Bad input raises AnnotationError with a one-line message "<file>:<line>: <what is wrong>".
Every number must be finite. Spans: bad_spans="error" rejects a negative start, start >= end, a
start beyond the duration, or an end more than END_TOLERANCE_S past it (an end a little past the
duration is kept: ActivityNet rounds ends up, by at most 0.01 s in its release files); "fix" swaps
reversed spans and clips them to [0, duration] (ActivityNet train has reversed and empty spans);
"keep" checks nothing but finiteness.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from prvr.errors import AnnotationError
from prvr.store.splits import caption_id, check_video_id, fail, read_text_file, text_lines

END_TOLERANCE_S = 0.1  # how far (seconds) an end may pass the video's duration
SPAN_POLICIES = ("error", "fix", "keep")


@dataclass(frozen=True)
class Query:
    """One text query with its ground-truth video and span (seconds)."""
    vid: str
    duration: float | None      # None where the format has no durations (Charades-STA txt)
    start: float
    end: float
    desc: str
    desc_id: int
    caption_id: str             # f"{vid}#enc#{k}"


def _clean_desc(desc, where: str) -> str:
    if not isinstance(desc, str):
        fail(where, f"description must be a string, got {type(desc).__name__}")
    text = " ".join(desc.split())
    if not text:
        fail(where, "empty description")
    return text


def _number(value, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        fail(where, f"{name} must be a finite number, got {value!r}"[:200])
    return float(value)


def _span(start: float, end: float, duration: float | None, policy: str, where: str):
    """Apply the span policy; return (start, end)."""
    if policy == "keep":
        return start, end
    if policy == "fix":
        start, end = min(start, end), max(start, end)
        start = max(start, 0.0)
        if duration is not None:
            start, end = min(start, duration), min(end, duration)
        return start, end
    if start < 0:
        fail(where, f"negative start {start}")
    if start >= end:
        fail(where, f"start {start} >= end {end}")
    if duration is not None and start > duration:
        fail(where, f"start {start} is beyond the duration {duration}")
    if duration is not None and end > duration + END_TOLERANCE_S:
        fail(where, f"end {end} is more than {END_TOLERANCE_S} s past the duration {duration}")
    return start, end


class _DuplicateKey(ValueError):
    """A key given twice in one JSON object (json.loads would keep the last value without a word)."""


def _unique_keys(pairs: list) -> dict:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise _DuplicateKey(next(k for k in keys if keys.count(k) > 1))
    return dict(pairs)


def _check_policy(bad_spans: str) -> None:
    if bad_spans not in SPAN_POLICIES:
        raise AnnotationError(f"bad_spans must be one of {', '.join(SPAN_POLICIES)}, got {bad_spans!r}")


def _json_rows(path: Path, fields: tuple[str, ...]):
    """(line number, "<file>:<line>", row) of a JSON-lines file whose rows have every one of `fields`."""
    for line, text in text_lines(path):
        where = f"{path}:{line}"
        try:
            row = json.loads(text, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as err:
            fail(where, f"malformed JSON ({err.msg} at column {err.colno})")
        except _DuplicateKey as err:
            fail(where, f"duplicate key {err.args[0]!r} in one object (JSON keeps the last value silently)")
        if not isinstance(row, dict):
            fail(where, "expected a JSON object")
        for name in fields:
            if name not in row:
                fail(where, f"missing field {name!r}")
        yield line, where, row


def read_tvr_jsonl(path: str | Path, bad_spans: str = "error") -> list[Query]:
    """TVR release jsonl (and the demo corpus): {"vid_name", "duration", "ts", "desc", "desc_id"}."""
    path, counts, seen, queries = Path(path), defaultdict(int), {}, []
    _check_policy(bad_spans)
    for line, where, row in _json_rows(path, ("vid_name", "duration", "ts", "desc", "desc_id")):
        vid, ts, desc_id = row["vid_name"], row["ts"], row["desc_id"]
        check_video_id(vid, where)
        if not isinstance(ts, list) or len(ts) != 2:
            fail(where, f"ts must be [start, end], got {ts!r}"[:200])
        if isinstance(desc_id, bool) or not isinstance(desc_id, int):
            fail(where, f"desc_id must be an integer, got {desc_id!r}"[:200])
        if desc_id in seen:
            fail(where, f"duplicate desc_id {desc_id} (first at line {seen[desc_id]})")
        seen[desc_id] = line
        duration = _number(row["duration"], "duration", where)
        start, end = (_number(t, "ts", where) for t in ts)
        start, end = _span(start, end, duration, bad_spans, where)
        queries.append(Query(vid, duration, start, end, _clean_desc(row["desc"], where),
                             desc_id, caption_id(vid, counts[vid])))
        counts[vid] += 1
    return queries


def read_activitynet_json(path: str | Path, bad_spans: str = "error") -> list[Query]:
    """ActivityNet Captions json: {vid: {"duration", "timestamps", "sentences"}}; desc_id = running index.

    The file is one JSON document, so errors name the video and sentence instead of a line.
    """
    path = Path(path)
    _check_policy(bad_spans)
    try:
        data = json.loads(read_text_file(path), object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as err:
        fail(f"{path}:{err.lineno}", f"malformed JSON ({err.msg} at column {err.colno})")
    except _DuplicateKey as err:
        fail(str(path), f"duplicate key {err.args[0]!r} in one object (JSON keeps the last value silently)")
    if not isinstance(data, dict):
        fail(str(path), "expected a JSON object mapping video ids to annotations")
    queries = []
    for vid, entry in data.items():
        where = f"{path}: video {vid!r}"
        check_video_id(vid, where)
        if not isinstance(entry, dict):
            fail(where, "expected an object")
        for name in ("duration", "timestamps", "sentences"):
            if name not in entry:
                fail(where, f"missing field {name!r}")
        spans, sentences = entry["timestamps"], entry["sentences"]
        if not isinstance(spans, list) or not isinstance(sentences, list) or len(spans) != len(sentences):
            fail(where, "timestamps and sentences must be lists of equal length")
        duration = _number(entry["duration"], "duration", where)
        for k, (span, sentence) in enumerate(zip(spans, sentences)):
            item = f"{where} sentence {k}"
            if not isinstance(span, list) or len(span) != 2:
                fail(item, f"timestamp must be [start, end], got {span!r}"[:200])
            start, end = (_number(t, "timestamp", item) for t in span)
            start, end = _span(start, end, duration, bad_spans, item)
            queries.append(Query(vid, duration, start, end, _clean_desc(sentence, item),
                                 len(queries), caption_id(vid, k)))
    return queries


def read_charades_sta(path: str | Path, durations: Mapping[str, float] | None = None,
                      bad_spans: str = "error") -> list[Query]:
    """Charades-STA txt: "VID start end##sentence" per line; desc_id = running index.

    durations: video id -> seconds (the txt has none); None leaves Query.duration None.
    """
    path, counts, queries = Path(path), defaultdict(int), []
    _check_policy(bad_spans)
    for line, text in text_lines(path):
        where = f"{path}:{line}"
        head, sep, sentence = text.partition("##")
        fields = head.split()
        if not sep or len(fields) != 3:
            fail(where, "expected 'VIDEO_ID START END##SENTENCE'")
        vid = fields[0]
        check_video_id(vid, where)
        try:
            start, end = float(fields[1]), float(fields[2])
        except ValueError:
            fail(where, f"start and end must be numbers, got {fields[1]!r} {fields[2]!r}")
        duration = None
        if durations is not None:
            if vid not in durations:
                fail(where, f"no duration given for video {vid!r}")
            duration = float(durations[vid])
        start, end = _span(start, end, duration, bad_spans, where)
        queries.append(Query(vid, duration, start, end, _clean_desc(sentence, where),
                             len(queries), caption_id(vid, counts[vid])))
        counts[vid] += 1
    return queries


# a new format: its reader here and its name in the choices of prvr.config_data.SplitSource.format
def read_qvhighlights_jsonl(path: str | Path, bad_spans: str = "error") -> list[Query]:
    """QVHighlights (moment_detr's highlight_{train,val}_release.jsonl): {"qid", "query", "duration",
    "vid", "relevant_windows": [[start, end], ...]}; desc_id = qid, k = the query's position among its
    video's rows. A query may have several windows: its span is the earliest one (PRVR ranks videos;
    the span feeds only the moment diagnostics). The test release has no windows (its labels are
    not public): a row without them is an error that says to report the val file instead."""
    path, counts, seen, queries = Path(path), defaultdict(int), {}, []
    _check_policy(bad_spans)
    for line, where, row in _json_rows(path, ("qid", "query", "duration", "vid")):
        vid, qid, windows = row["vid"], row["qid"], row.get("relevant_windows")
        check_video_id(vid, where)
        if isinstance(qid, bool) or not isinstance(qid, int):
            fail(where, f"qid must be an integer, got {qid!r}"[:200])
        if qid in seen:
            fail(where, f"duplicate qid {qid} (first at line {seen[qid]})")
        seen[qid] = line
        if not windows:
            fail(where, "no relevant_windows (QVHighlights' test labels are not public: its val file is the "
                        "reported split, as in the authors' code)")
        if not isinstance(windows, list) or not all(isinstance(w, list) and len(w) == 2 for w in windows):
            fail(where, f"relevant_windows must be [[start, end], ...], got {windows!r}"[:200])
        duration = _number(row["duration"], "duration", where)
        spans = sorted(_span(_number(a, "relevant_windows", where), _number(b, "relevant_windows", where),
                             duration, bad_spans, where) for a, b in windows)
        queries.append(Query(vid, duration, *spans[0], _clean_desc(row["query"], where), qid,
                             caption_id(vid, counts[vid])))
        counts[vid] += 1
    return queries


READERS = {"tvr": read_tvr_jsonl, "activitynet": read_activitynet_json, "charades": read_charades_sta,
           "qvhighlights": read_qvhighlights_jsonl}
FORMATS = tuple(READERS)


def read_annotations(path: str | Path, fmt: str, **options) -> list[Query]:
    """Read any supported format: "tvr" (also the demo corpus), "activitynet", "charades" or
    "qvhighlights"; an unknown one is an AnnotationError naming the file, never another format's reader."""
    if fmt not in READERS:
        raise AnnotationError(f"{path}: unknown annotation format {fmt!r} (known: {', '.join(FORMATS)})")
    return READERS[fmt](path, **options)


