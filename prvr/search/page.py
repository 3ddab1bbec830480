"""`prvr search --html`: the hits of one query as a self-contained HTML page: per hit its rank,
video, score and moment, a strip of the frames inside the moment and a time bar marking the moment in
the whole video (thumbnails embedded as base64 JPEG, so the page is one file).

    write_results_page(hits, "a red circle spins", "results.html")

Thumbnails: THUMB_SAMPLES frames at the centres of equal bins of the video (the pipeline's time-uniform
sampling), or of the hit's window for a long video indexed as windows (prvr.search.windows: 32 samples
over an hour would miss a moment of seconds); those whose time falls inside the moment, at most
`thumbs` of them evenly spread, or the one nearest to the moment's centre when none does. A video that can no longer be decoded gets a line
saying why instead of its strip; the page is still written.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
from PIL import Image

from prvr.errors import PrvrError
from prvr.io import write_text
from prvr.video.decoding import decode_at_times, decode_video

THUMB_SAMPLES = 32  # frames decoded per hit to choose the moment's thumbnails from
MOMENT_COLOUR = "#d62728"  # the moment on the time bar (a test finds it in the rendered page)

STYLE = f"""body {{ font-family: sans-serif; margin: 24px; }}
.hit {{ margin-bottom: 22px; }} .meta {{ margin-bottom: 6px; }}
.strip img {{ height: 96px; margin-right: 4px; border: 1px solid #999; }}
.bar {{ position: relative; height: 14px; background: #ddd; width: 640px; margin-top: 6px; }}
.moment {{ position: absolute; top: 0; height: 14px; background: {MOMENT_COLOUR}; }}
.why {{ color: #a00; }}"""


def moment_frames(times: np.ndarray, start: float, end: float, thumbs: int) -> list[int]:
    """Indices of the sampled frames (times in seconds) to show for the moment [start, end]."""
    inside = np.flatnonzero((times >= start) & (times <= end))
    if len(inside) == 0:
        return [int(np.argmin(np.abs(times - (start + end) / 2)))]
    picks = np.linspace(0, len(inside) - 1, num=min(thumbs, len(inside))).round().astype(int)
    return [int(inside[p]) for p in dict.fromkeys(picks.tolist())]


def _jpeg(frame: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _strip(hit, thumbs: int, size: int) -> str:
    folder_fps = getattr(hit, "folder_fps", None)  # a video indexed from a frame folder
    try:
        if getattr(hit, "window", None):  # a long video: the samples cover the hit's window only
            start, end = hit.window
            times = start + (np.arange(THUMB_SAMPLES) + 0.5) * (end - start) / THUMB_SAMPLES  # (T,) seconds
            frames = decode_at_times(hit.file, times, size=size, folder_fps=folder_fps)  # (T, size, size, 3)
        else:
            frames = decode_video(hit.file, num_frames=THUMB_SAMPLES, size=size,
                                  folder_fps=folder_fps)  # (T, size, size, 3)
            times = (np.arange(len(frames)) + 0.5) * hit.duration / len(frames)  # bin centres, seconds
    except (PrvrError, OSError, ValueError) as err:
        return f'<div class="why">frames unavailable: {html.escape(str(err))}</div>'
    images = "".join(f'<img src="{_jpeg(frames[i])}" alt="{times[i]:.1f} s" title="{times[i]:.1f} s">'
                     for i in moment_frames(times, hit.start, hit.end, thumbs))
    return f'<div class="strip">{images}</div>'


def _bar(hit) -> str:
    left = 100.0 * hit.start / hit.duration if hit.duration > 0 else 0.0
    width = max(100.0 * (hit.end - hit.start) / hit.duration, 0.5) if hit.duration > 0 else 100.0
    return f'<div class="bar"><div class="moment" style="left: {left:.2f}%; width: {width:.2f}%"></div></div>'


def results_page(hits, query: str, thumbs: int = 4, size: int = 96) -> str:
    """The page's HTML for the ranked hits of `query`."""
    rows = []
    for hit in hits:
        meta = (f"<b>{hit.rank}.</b> {html.escape(hit.video)} &middot; score {hit.score:.4f} &middot; "
                f"moment {hit.start:.1f}&ndash;{hit.end:.1f} s of {hit.duration:.1f} s")
        rows.append(f'<div class="hit" id="hit-{hit.rank}"><div class="meta">{meta}</div>'
                    f"{_strip(hit, thumbs, size)}{_bar(hit)}</div>")
    title = html.escape(query)
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>prvr search: {title}</title>"
            f"<style>{STYLE}</style></head><body><h2>{title}</h2>"
            f"<p>{len(hits)} videos, best first; the red mark is the moment.</p>{''.join(rows)}</body></html>\n")


def write_results_page(hits, query: str, out: str | Path, thumbs: int = 4, size: int = 96) -> Path:
    """Write results_page atomically to `out`; returns the path."""
    write_text(out, results_page(hits, query, thumbs, size))
    return Path(out)
