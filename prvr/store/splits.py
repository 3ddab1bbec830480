"""The MS-SL caption files that define a split (`<vid>#enc#<k> <caption>` per line): which videos and
captions a split holds. Every feature store, cache and dataset is indexed by them, and no video may be
in two splits.

    write_caption_txt(queries, "tvr_test.caption.txt")
    split = read_split("tvr_test.caption.txt")   # split.videos, split.captions[vid], split.texts[cap]

Bad input raises AnnotationError with a one-line message "<file>:<line>: <what is wrong>".
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from prvr.errors import AnnotationError
from prvr.io import write_text


def fail(where: str, what: str):
    """Raise the one-line error; `where` is "<file>:<line>" or "<file>: <item>"."""
    raise AnnotationError(f"{where}: {what}")


def read_text_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        fail(str(path), "file not found")
    except IsADirectoryError:
        fail(str(path), "is a directory, expected a file")
    except UnicodeDecodeError as err:
        fail(str(path), f"not UTF-8 text (byte {err.start})")


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) for every non-blank line."""
    for number, line in enumerate(read_text_file(path).splitlines(), start=1):
        if line.strip():
            yield number, line


def check_video_id(vid, where: str) -> None:
    """A video id is a file name, never a path: non-empty, no '#' or whitespace (caption ids are
    "<vid>#enc#<k>" followed by a space), no '/' or '\\', not '.', '..' or hidden (a leading '.'), no NUL;
    else the one-line AnnotationError at `where`."""
    if not isinstance(vid, str) or not vid or "#" in vid or any(c.isspace() for c in vid):
        fail(where, f"video id must be a non-empty string without '#' or spaces, got {vid!r}"[:200])
    if "/" in vid or "\\" in vid or "\0" in vid or vid.startswith("."):
        fail(where, f"video id {vid!r} is not a file name (ids become file names: no '/', '\\', NUL "
                    "or leading '.')"[:200])


def caption_id(vid: str, k: int) -> str:
    return f"{vid}#enc#{k}"


def write_caption_txt(queries: Iterable, path: str | Path) -> None:
    """Write "<caption_id> <caption>" lines (the MS-SL caption file), atomically, from rows with
    `.caption_id` and `.desc` (prvr.sources.annotations.Query)."""
    lines = []
    for query in queries:
        desc = " ".join(query.desc.split())
        if " " in query.caption_id or not desc:
            raise AnnotationError(f"{path}: cannot write caption {query.caption_id!r}: "
                                  "id has a space or caption is empty")
        lines.append(f"{query.caption_id} {desc}\n")
    write_text(path, "".join(lines))


def read_caption_txt(path: str | Path) -> list[tuple[str, str]]:
    """(caption_id, caption) per line of an MS-SL caption file, in file order."""
    path, rows, seen = Path(path), [], {}
    for line, text in text_lines(path):
        where = f"{path}:{line}"
        cap_id, _, caption = text.strip().partition(" ")
        vid, sep, k = cap_id.partition("#enc#")
        if not sep or not vid or not k.isdigit():
            fail(where, f"caption id must look like '<video>#enc#<k>', got {cap_id!r}"[:200])
        check_video_id(vid, where)
        if not caption.strip():
            fail(where, f"empty caption for {cap_id!r}")
        if cap_id in seen:
            fail(where, f"duplicate caption id {cap_id!r} (first at line {seen[cap_id]})")
        seen[cap_id] = line
        rows.append((cap_id, " ".join(caption.split())))
    return rows


def video_of(caption_id_: str) -> str:
    """Video id of a caption id: the text before the first '#'."""
    return caption_id_.split("#", 1)[0]


def check_disjoint_splits(split_videos: Mapping[str, Iterable[str]]) -> None:
    """A video in two splits (named by their files) is an AnnotationError naming both: its captions
    in one split would be evaluated against a video the model was trained or selected on."""
    owner: dict[str, str] = {}
    for split, vids in split_videos.items():
        vids = list(dict.fromkeys(vids))
        for vid in vids:
            first = owner.setdefault(vid, split)
            if first != split:
                shared = sorted(set(vids) & {v for v, s in owner.items() if s == first})
                raise AnnotationError(f"{split}: video {vid!r} is also in {first} ({len(shared)} videos in "
                                      f"both); a video's captions must all be in one split")


@dataclass
class SplitIndex:
    """Videos of a split in first-seen order, and each video's caption ids and texts."""
    videos: list[str]
    captions: dict[str, list[str]]  # vid -> caption ids
    texts: dict[str, str]  # caption id -> caption

    @property
    def caption_ids(self) -> list[str]:
        return [c for v in self.videos for c in self.captions[v]]


def read_split(caption_file: str | Path) -> SplitIndex:
    """Index a caption file by video; an empty file is an error (a split with no queries)."""
    queries = read_caption_txt(caption_file)
    videos: list[str] = []
    captions: dict[str, list[str]] = {}
    texts: dict[str, str] = {}
    for caption_id, text in queries:
        vid = caption_id.split("#", 1)[0]
        if vid not in captions:
            videos.append(vid)
            captions[vid] = []
        captions[vid].append(caption_id)
        texts[caption_id] = text
    if not videos:
        raise AnnotationError(f"{caption_file}: no captions in file")
    return SplitIndex(videos, captions, texts)
