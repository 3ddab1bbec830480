"""PRVR models: `create_model(cfg.model)` and the pieces later variants reuse."""
from prvr.models.base import MAX_CLIP_AND_FRAME, ScoreBranch
from prvr.models.common import ModelInputError, PooledTokens, uniform_clip_pool, uniform_segments
from prvr.models.factory import MODEL_BUILDERS, create_model
from prvr.models.gmmformer_lite import GMMFormerV2Lite
from prvr.models.gmmformer_v2 import GMMFormerV2

__all__ = ["MAX_CLIP_AND_FRAME", "MODEL_BUILDERS", "ScoreBranch", "GMMFormerV2", "GMMFormerV2Lite", "ModelInputError", "PooledTokens",
           "create_model", "uniform_clip_pool", "uniform_segments"]
