"""PRVR models: `create_model(cfg.model)` and the pieces later variants reuse."""
from prvr.models.common import ModelInputError, PooledTokens, uniform_clip_pool, uniform_segments
from prvr.models.factory import MODEL_BUILDERS, create_model
from prvr.models.gmmformer_lite import GMMFormerV2Lite
from prvr.models.gmmformer_v2 import GMMFormerV2

__all__ = ["MODEL_BUILDERS", "GMMFormerV2", "GMMFormerV2Lite", "ModelInputError", "PooledTokens",
           "create_model", "uniform_clip_pool", "uniform_segments"]
