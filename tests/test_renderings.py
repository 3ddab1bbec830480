"""Markdown and LaTeX renderings of the result tables: same cells as the CSV, escaping, empty cells,
and the main table's "mean ± std" cells."""
import pytest

from prvr.errors import PrvrError
from prvr.reporting.renderings import latex, markdown, render_table

CSV = ("configuration,seeds,SumR,SumR_std,description\n"
       "baseline,1 2,135.60,0.70,GMMFormer v2 backbone\n"
       "full_summary,1,137.2,,\"+ TCPL & CBVA, 50% cheaper_x\"\n")


def test_markdown_keeps_every_cell_as_written(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(CSV)
    lines = markdown(path).splitlines()
    assert [c.strip() for c in lines[0].split("|")[1:-1]] == ["configuration", "seeds", "SumR", "SumR_std", "description"]
    assert "135.60" in lines[2] and "nan" not in markdown(path)  # 135.60 not re-printed as 135.6
    assert lines[3].count("|") == 6


def test_latex_escapes_and_renders_files(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(CSV)
    text = latex(path, caption="Ablation")
    assert r"\begin{tabular}" in text and r"\toprule" in text and r"\caption{Ablation}" in text
    assert r"TCPL \& CBVA, 50\% cheaper\_x" in text and r"SumR\_std" in text
    md, tex = render_table(path)
    assert md.read_text() == markdown(path) and tex.read_text() == latex(path)


def test_bad_table_is_one_line(tmp_path):
    with pytest.raises(PrvrError, match=r"missing.csv: table not found"):
        markdown(tmp_path / "missing.csv")


def test_mean_std_cells(tmp_path):
    """mean_std: X and X_std shown as one "X ± X_std" cell (X alone where the std or X is empty)."""
    path = tmp_path / "t.csv"
    path.write_text(CSV + "tvr_reported,,172.3,,MS-SL README\n")
    lines = markdown(path, mean_std=True).splitlines()
    assert [c.strip() for c in lines[0].split("|")[1:-1]] == ["configuration", "seeds", "SumR", "description"]
    assert [c.strip() for c in lines[2].split("|")[3:4]] == ["135.60 ± 0.70"]
    assert [c.strip() for c in lines[3].split("|")[3:4]] == ["137.2"] and "172.3 " in lines[4]
    assert r"135.60 $\pm$ 0.70" in latex(path, mean_std=True)
    assert "SumR_std" in markdown(path)  # the default keeps the CSV's columns
