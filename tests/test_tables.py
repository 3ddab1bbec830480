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


def test_paired_difference_by_hand():
    from prvr.reporting.tables import paired_difference
    # diffs 2, 4, 6 over seeds 1..3: mean 4, sd 2, t(0.975, 2) = 4.303 -> 4.303 * 2 / sqrt(3)
    out = paired_difference({1: 12.0, 2: 14.0, 3: 16.0, 9: 99.0}, {1: 10.0, 2: 10.0, 3: 10.0})
    assert out["n"] == 3 and out["mean"] == 4.0 and abs(out["ci95"] - 4.303 * 2 / 3 ** 0.5) < 1e-9
    assert paired_difference({1: 5.0}, {1: 3.0}) == {"mean": 2.0, "ci95": None, "n": 1}
    assert paired_difference({1: 5.0}, {2: 3.0}) == {"mean": None, "ci95": None, "n": 0}


def test_t_quantiles_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    from prvr.reporting.tables import T975
    assert all(abs(stats.t.ppf(0.975, df) - q) < 5e-4 for df, q in enumerate(T975, start=1))


def test_ablation_table_pairs_rows_with_the_baseline_by_seed(tmp_path):
    from prvr.reporting.tables import ablation_table, write_table

    def metrics_file(name, seed, sumr):
        path = tmp_path / f"{name}{seed}.json"
        path.write_text(json.dumps({"metrics": {"R@1": 1.0, "R@5": 2.0, "R@10": 3.0, "R@100": sumr - 6.0,
                                                "SumR": sumr}, "provenance": {"seed": seed}}))
        return path
    files = {"baseline": [metrics_file("b", s, v) for s, v in ((1, 100.0), (2, 110.0), (3, 90.0))],
             "method": [metrics_file("m", s, v) for s, v in ((3, 93.0), (1, 101.0), (2, 112.0))]}
    table = ablation_table(files, paired_reference="baseline")
    assert table[0]["SumR_paired_diff"] == 0.0 and table[1]["SumR_paired_diff"] == 2.0
    assert table[1]["SumR_paired_ci95"] == round(4.303 * 1.0 / 3 ** 0.5, 2) and table[1]["paired_seeds"] == 3
    write_table(table, tmp_path / "t.csv")
    header = (tmp_path / "t.csv").read_text().splitlines()[0]
    assert "SumR_paired_diff,SumR_paired_ci95,paired_seeds,selection" in header
