"""Evaluation: retrieval metrics on score matrices (R@K, SumR, the tie rule), each model's scores over a split,
and the semantic-collapse diagnostics."""
