"""Training objectives: `create_loss(cfg.loss)` returns a callable giving named, weighted terms."""
from prvr.losses.factory import CompositeLoss, create_loss
from prvr.losses.retrieval import (RetrievalLoss, multi_positive_nce, sample_negatives,
                                   triplet_ranking)

__all__ = ["CompositeLoss", "RetrievalLoss", "create_loss", "multi_positive_nce",
           "sample_negatives", "triplet_ranking"]
