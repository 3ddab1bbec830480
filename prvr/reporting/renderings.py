"""Markdown and LaTeX renderings of a result table (CSV), through pandas.

    render_table("results/ablation.csv")   # writes results/ablation.md and results/ablation.tex

The CSV stays the source of truth (every number traces to metrics files through its sources sidecar);
the renderings show the same cells: Markdown for READMEs and issues, LaTeX (booktabs) for a paper.
Empty cells (e.g. a std over one seed) render as empty, not "nan". With `mean_std=True` (the main
table) each column X that has an X_std column shows "X ± X_std" (X alone where the std is empty) and
the _std columns are left out; the cells' text is still the CSV's.
"""
from __future__ import annotations

from pathlib import Path

from prvr.errors import PrvrError
from prvr.io import write_text


def _frame(csv_path: Path):
    import pandas as pd
    try:
        return pd.read_csv(csv_path, dtype=str, keep_default_na=False)  # cells exactly as written
    except FileNotFoundError:
        raise PrvrError(f"{csv_path}: table not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise PrvrError(f"{csv_path}: not a CSV table ({type(err).__name__})") from None


def with_mean_std(frame):
    """Each column X with an X_std column as "X ± X_std" (X alone where the std is empty), no _std columns."""
    frame = frame.copy()
    for std in [c for c in frame.columns if c.endswith("_std") and c[:-4] in frame.columns]:
        mean = std[:-4]
        frame[mean] = [f"{m} ± {s}" if s != "" and m != "" else m for m, s in zip(frame[mean], frame[std])]
        frame = frame.drop(columns=std)
    return frame


def _shown(csv_path: str | Path, mean_std: bool):
    frame = _frame(Path(csv_path))
    return with_mean_std(frame) if mean_std else frame


def markdown(csv_path: str | Path, mean_std: bool = False) -> str:
    """The table as a GitHub Markdown pipe table."""
    return _shown(csv_path, mean_std).to_markdown(index=False, disable_numparse=True) + "\n"


def latex(csv_path: str | Path, caption: str | None = None, mean_std: bool = False) -> str:
    """The table as a LaTeX tabular (booktabs rules), special characters escaped."""
    frame = _shown(csv_path, mean_std)
    text = frame.to_latex(index=False, escape=True, caption=caption, column_format="l" * frame.shape[1])
    return text.replace("±", r"$\pm$")


def render_table(csv_path: str | Path, caption: str | None = None, mean_std: bool = False) -> tuple[Path, Path]:
    """Write <table>.md and <table>.tex beside <table>.csv, atomically; return their paths."""
    csv_path = Path(csv_path)
    md, tex = csv_path.with_suffix(".md"), csv_path.with_suffix(".tex")
    write_text(md, markdown(csv_path, mean_std))
    write_text(tex, latex(csv_path, caption, mean_std))
    return md, tex
