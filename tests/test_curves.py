"""Training-curve figures: series per quantity and seed from train_log.jsonl, PNG + PDF, bad lines named."""
import json

import pytest

from prvr.errors import PrvrError
from prvr.reporting.curves import curve_series, curves_figure, read_log


def _log(path, sumrs, extra_term=None):
    rows = []
    for epoch, sumr in enumerate(sumrs):
        loss = {"loss": 2.0 - 0.1 * epoch, "nce_clip": 1.0 - 0.05 * epoch}
        if extra_term:
            loss[extra_term] = 0.5
        rows.append(json.dumps({"epoch": epoch, "loss": loss, "val": {"SumR": sumr, "R@1": 1.0}}))
    path.write_text("\n".join(rows) + "\n")
    return path


def test_series_per_quantity_and_seed(tmp_path):
    logs = {1: read_log(_log(tmp_path / "a.jsonl", [10.0, 12.0, 11.0])),
            2: read_log(_log(tmp_path / "b.jsonl", [9.0, 13.0], extra_term="cbva"))}
    series = curve_series(logs)
    assert list(series) == ["val SumR", "loss", "cbva", "nce_clip"]
    assert series["val SumR"][1] == ([0, 1, 2], [10.0, 12.0, 11.0])
    assert list(series["cbva"]) == [2] and series["nce_clip"][2] == ([0, 1], [1.0, 0.95])


def test_figure_written_as_png_and_pdf(tmp_path):
    files = {1: _log(tmp_path / "a.jsonl", [10.0, 12.0]), 2: _log(tmp_path / "b.jsonl", [9.0, 13.0])}
    drawn = curves_figure(files, tmp_path / "fig/curves_baseline.png", "baseline")
    assert drawn == ["val SumR", "loss", "nce_clip"]
    assert (tmp_path / "fig/curves_baseline.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "fig/curves_baseline.pdf").read_bytes()[:4] == b"%PDF"


def test_bad_log_line_is_named(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"epoch": 0, "loss": {}, "val": {"SumR": 1}}\n{"epoch": 1}\n')
    with pytest.raises(PrvrError, match=r"bad.jsonl:2: not a training-log line"):
        read_log(bad)
    with pytest.raises(PrvrError, match=r"missing.jsonl: training log not found"):
        read_log(tmp_path / "missing.jsonl")
