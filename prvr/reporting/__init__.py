"""Reporting: the ablation, collapse and main tables (csv, md, tex) and the figures (t-SNE, training curves)."""
