"""`prvr search --html`: the hits as one self-contained page (thumbnails of the moment's frames, a time
bar marking the moment), rendered by a real headless browser (Debian's chromium, which .ci/run
installs as it installs SLURM): the screenshot shows every hit's bar with its moment."""
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from prvr.cli import main
from prvr.search import Hit, write_results_page
from prvr.search.page import MOMENT_COLOUR, moment_frames, results_page
from test_search import setup  # noqa: F401  (the module fixture: generated videos, a model, an index)

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


def test_moment_frames_hand_computed():
    times = np.array([0.5, 1.5, 2.5, 3.5, 4.5, 5.5])
    assert moment_frames(times, 1.0, 5.0, 4) == [1, 2, 3, 4]
    assert moment_frames(times, 0.0, 6.0, 3) == [0, 2, 5]  # evenly spread over the six inside
    assert moment_frames(times, 2.6, 3.0, 4) == [2]  # none inside: the nearest to the centre 2.8


def test_page_has_every_hit_its_thumbnails_and_escapes_text(setup, tmp_path):  # noqa: F811
    root, _, _ = setup
    video = sorted((root / "videos").iterdir())[0]
    hits = [Hit(1, "<b>v</b>", 0.5, 2.0, 4.0, 8.0, str(video)),
            Hit(2, "gone", 0.25, 0.0, 1.0, 5.0, str(tmp_path / "gone.mp4"))]
    page = results_page(hits, 'a "red" <circle>', thumbs=3)
    assert "&lt;b&gt;v&lt;/b&gt;" in page and "&lt;circle&gt;" in page and "<circle>" not in page
    assert page.count("data:image/jpeg;base64,") == 3  # three frames inside 2-4 s of the first video
    assert re.search(r"frames unavailable: .*gone\.mp4", page)  # the second cannot be decoded: said, not fatal
    assert 'left: 25.00%; width: 25.00%' in page and 'left: 0.00%; width: 20.00%' in page


@pytest.mark.skipif(BROWSER is None, reason="no chromium (.ci/run installs it)")
def test_the_page_renders_in_a_headless_browser(setup, tmp_path, capsys):  # noqa: F811
    root, _, captions = setup
    out = tmp_path / "hits.html"
    assert main(["search", str(root / "index32"), next(iter(captions.values())), "-k", "3", "--html", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    shot = tmp_path / "shot.png"
    proc = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--screenshot={shot}", "--window-size=900,900", out.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.is_file(), proc.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)  # (H, W, 3)
    red = np.array([int(MOMENT_COLOUR[i:i + 2], 16) for i in (1, 3, 5)])
    is_red = (np.abs(pixels - red).sum(axis=2) < 30)  # the moments on the time bars
    rows_with_red = np.flatnonzero(is_red.any(axis=1))
    bands = np.split(rows_with_red, np.flatnonzero(np.diff(rows_with_red) > 1) + 1)
    assert len(bands) == 3, f"{len(bands)} moment bars visible"  # one per hit
    thumbs = (np.abs(np.diff(pixels, axis=1)).sum(axis=2) > 60).sum()
    assert thumbs > 1000  # the thumbnails are drawn (generated scenes have edges), not blank boxes
