"""Markdown and LaTeX renderings of a result table (CSV), through pandas.

    render_table("results/ablation.csv")   # writes results/ablation.md and results/ablation.tex

The CSV stays the source of truth (every number traces to metrics files through its sources sidecar);
the renderings show the same cells: Markdown for READMEs and issues, LaTeX (booktabs) for a paper.
Empty cells (e.g. a std over one seed) render as empty, not "nan".
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


def markdown(csv_path: str | Path) -> str:
    """The table as a GitHub Markdown pipe table."""
    return _frame(Path(csv_path)).to_markdown(index=False, disable_numparse=True) + "\n"


def latex(csv_path: str | Path, caption: str | None = None) -> str:
    """The table as a LaTeX tabular (booktabs rules), special characters escaped."""
    frame = _frame(Path(csv_path))
    return frame.to_latex(index=False, escape=True, caption=caption, column_format="l" * frame.shape[1])


def render_table(csv_path: str | Path, caption: str | None = None) -> tuple[Path, Path]:
    """Write <table>.md and <table>.tex beside <table>.csv, atomically; return their paths."""
    csv_path = Path(csv_path)
    md, tex = csv_path.with_suffix(".md"), csv_path.with_suffix(".tex")
    write_text(md, markdown(csv_path))
    write_text(tex, latex(csv_path, caption))
    return md, tex
