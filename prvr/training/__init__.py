"""Training: the loop (checkpoints, resume, early stopping, provenance) and the authors' optimiser and schedule."""
