"""The qualitative figure's query rule (prvr.reporting.qualitative.choose_queries) on hand-made ranks,
and the figure drawn from hand-made rows."""
import numpy as np

from prvr.reporting.qualitative import QueryRow, VideoHit, choose_queries, qualitative_figure


def test_largest_disagreements_first_ties_by_caption_id_then_seeded_random_others():
    ranks_a = np.array([1, 8, 2, 4, 1, 3, 5])
    ranks_b = np.array([1, 1, 16, 1, 4, 3, 5])  # |log2 ratio|: 0, 3, 3, 2, 2, 0, 0
    ids = ["c0", "c1", "c2", "c3", "c4", "c5", "c6"]
    chosen = choose_queries(ranks_a, ranks_b, ids, n_disagree=3, n_random=2, seed=0)
    assert chosen[:3] == [(1, "disagree"), (2, "disagree"), (3, "disagree")]  # c3 before c4: ties by id
    random = [q for q, why in chosen[3:]]
    assert len(random) == 2 and not set(random) & {1, 2, 3}
    assert chosen == choose_queries(ranks_a, ranks_b, ids, 3, 2, seed=0)  # the same draw every time
    assert len(choose_queries(ranks_a[:2], ranks_b[:2], ids[:2], 3, 2)) == 2  # fewer queries than asked


def test_figure_is_written_as_png_and_pdf(tmp_path):
    strip = np.zeros((4, 8, 8, 3), np.uint8)
    hits = [VideoHit(f"v{i}", strip, 10.0, (2.0, 4.0)) for i in range(3)]
    rows = [QueryRow("a red circle", "v1", (1.0, 3.0), {"base": hits, "method": hits[::-1]}, {"base": 2, "method": 2})]
    qualitative_figure(rows, tmp_path / "q.png", "caption")
    assert (tmp_path / "q.png").stat().st_size > 0 and (tmp_path / "q.pdf").read_bytes().startswith(b"%PDF")
