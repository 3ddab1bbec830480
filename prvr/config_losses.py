"""The training objective's settings (config section `loss`): the retrieval term and each of the
method's and the baselines' extra terms, loaded into dataclasses by prvr.config like every section.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TcplConfig:
    """Text Correlation Preservation Learning (prvr.losses.tcpl).

    form "rkd" (authors' code): smooth-L1 between student and teacher pairwise-distance matrices
    (each over its mean distance, weight distance_weight) and triplet-angle cosines (angle_weight).
    form "kl" (seed summary): KL(S_teacher || S_student) of row-softmaxed similarities at temperature.
    """
    enabled: bool = False
    form: str = field(default="rkd", metadata={"choices": ("rkd", "kl")})
    distance_weight: float = 15.0
    angle_weight: float = 30.0
    kl_weight: float = 1.0
    temperature: float = 0.1
    angle_chunk: int = 1


@dataclass
class AdaptiveConfig:
    """Adaptive CBVA (prvr.losses.cbva).

    form "segments" (authors' code): per video, the number of CBVA segments is picked from
    segment_choices by how connected the thresholded similarity graph of its merged tokens is.
    form "weights" (seed summary): per-pair weights of the CBVA contrast from inter-segment similarity.
    pairing: how the segments form when merging on to a video's count: "bipartite" (authors' CBVA
    code: any even/odd token pair) or "adjacent" (order-preserving, like the clip-branch merging).
    """
    enabled: bool = False
    form: str = field(default="segments", metadata={"choices": ("segments", "weights")})
    segment_choices: tuple[int, ...] = (8, 6, 4, 3, 2)  # paper: 32, 20, 12, 8, 5
    threshold: float = 0.8
    pairing: str = field(default="bipartite", metadata={"choices": ("bipartite", "adjacent")})


@dataclass
class CbvaConfig:
    """Cross-Branch Video Alignment (prvr.losses.cbva).

    form "within_video" (authors' code): frame tokens vs their video's segment tokens and back,
    positives = the segment holding the frame, the other side detached, no temperature.
    form "infonce" (seed summary): InfoNCE at temperature between segment i of the fine branch and
    segment j of the coarse branch; cross_video_negatives adds other videos' segments as negatives.
    head "linear" (authors' code, `vproj_clip`): both branches' tokens pass through one shared
    trainable linear H -> H head before the CBVA contrast, so the alignment acts on a projection
    and not on the retrieval embedding itself; "none": CBVA on the retrieval tokens directly.
    """
    enabled: bool = False
    form: str = field(default="within_video", metadata={"choices": ("within_video", "infonce")})
    head: str = field(default="linear", metadata={"choices": ("linear", "none")})
    weight: float = 0.1
    temperature: float = 0.07
    cross_video_negatives: bool = False
    adaptive: AdaptiveConfig = field(default_factory=AdaptiveConfig)


@dataclass
class QueryDiverseConfig:
    """GMMFormer's query-diversity loss (prvr.losses.query_diverse): captions of the same video are
    pushed apart, log(1 + sum exp(scale * (cos + margin))) over each caption's siblings."""
    enabled: bool = False
    weight: float = 0.001  # its loss_factor[2]
    margin: float = 0.15  # its neg_factor[0]
    scale: float = 32.0  # its neg_factor[1]


@dataclass
class DistillConfig:
    """DL-DKD's dynamic knowledge distillation (prvr.losses.distill): KL between the frozen CLIP
    teacher's and the student's per-frame scores of each caption in its own video, at `temperature`,
    weighted by `weight` times a per-epoch decay: "exp" rate**epoch, "linear" max(1 - rate * epoch,
    0.05), "sigmoid" k / (k + exp(100 epoch / k)) with k = rate, "none" 1 (its code's
    --distill_loss_decay and exponential_k / linear_k / sigmoid_k)."""
    enabled: bool = False
    weight: float = 0.1  # its kl_intra_weight
    temperature: float = 0.2
    decay: str = field(default="exp", metadata={"choices": ("exp", "linear", "sigmoid", "none")})
    rate: float = 0.95  # its exponential_k


@dataclass
class LossConfig:
    """Retrieval loss on both branches (prvr.losses.retrieval), plus the paper's TCPL and CBVA, and
    the baselines' extra terms (GMMFormer's query diversity, DL-DKD's distillation)."""
    nce_weight_clip: float = 0.05
    nce_weight_frame: float = 0.04
    margin: float = 0.1
    hard_negative_topk: int = 20
    hard_negative_start_epoch: int = 20
    tcpl: TcplConfig = field(default_factory=TcplConfig)
    cbva: CbvaConfig = field(default_factory=CbvaConfig)
    query_diverse: QueryDiverseConfig = field(default_factory=QueryDiverseConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
