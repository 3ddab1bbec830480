"""Ablation table: means and sample std over seeds, traceable sources, one-line errors."""
import csv
import json

import pytest

from prvr.errors import PrvrError
from prvr.reporting.tables import ablation_table, write_table


def _metrics(path, seed, values):
    names = ["R@1", "R@5", "R@10", "R@100", "SumR"]
    path.write_text(json.dumps({"metrics": dict(zip(names, values)), "provenance": {"seed": seed}}))
    return path


def test_mean_and_std_over_seeds(tmp_path):
    a = _metrics(tmp_path / "a.json", 1, [10, 20, 30, 90, 150])
    b = _metrics(tmp_path / "b.json", 2, [12, 22, 34, 92, 160])
    c = _metrics(tmp_path / "c.json", 1, [5, 6, 7, 8, 26])
    table = ablation_table({"baseline": [a, b], "other": [c]})
    assert table[0]["seeds"] == "1 2" and table[0]["R@1"] == 11.0 and table[0]["SumR"] == 155.0
    assert table[0]["R@10_std"] == pytest.approx(2.83, abs=0.01)
    assert table[1]["SumR_std"] == ""
    out = tmp_path / "ablation.csv"
    write_table(table, out, sources={"baseline": [a, b], "other": [c]})
    rows = list(csv.DictReader(out.open()))
    assert [r["configuration"] for r in rows] == ["baseline", "other"]
    assert list(rows[0])[:7] == ["configuration", "seeds", "R@1", "R@5", "R@10", "R@100", "SumR"]
    assert json.loads((tmp_path / "ablation.sources.json").read_text())["other"] == [str(c)]


def test_bad_metrics_file_is_one_line_error(tmp_path):
    bad = tmp_path / "m.json"
    bad.write_text("{}")
    with pytest.raises(PrvrError, match="m.json: not a metrics file"):
        ablation_table({"x": [bad]})
    with pytest.raises(PrvrError, match="metrics file not found"):
        ablation_table({"x": [tmp_path / "missing.json"]})
