"""Training objectives: `create_loss(cfg.loss)` returns a callable giving named, weighted terms."""
from prvr.losses.adaptive import (connectivity_ratio, segment_counts, segment_pair_weights,
                                  transitive_closure)
from prvr.losses.cbva import CbvaLoss, infonce_cbva, within_video_cbva
from prvr.losses.factory import CompositeLoss, create_loss
from prvr.losses.retrieval import (RetrievalLoss, multi_positive_nce, sample_negatives,
                                   triplet_ranking)
from prvr.losses.tcpl import (TcplLoss, naive_rkd_angle_loss, rkd_angle_loss, rkd_distance_loss,
                              tcpl_kl_loss)

__all__ = ["CbvaLoss", "CompositeLoss", "RetrievalLoss", "TcplLoss", "connectivity_ratio",
           "create_loss", "infonce_cbva", "multi_positive_nce", "naive_rkd_angle_loss",
           "rkd_angle_loss", "rkd_distance_loss", "sample_negatives", "segment_counts",
           "segment_pair_weights", "tcpl_kl_loss", "transitive_closure", "triplet_ranking",
           "within_video_cbva"]
