"""PRVR models: `create_model(cfg.model)` and the pieces later variants reuse."""
from prvr.models.factory import MODEL_BUILDERS, create_model
from prvr.models.gmmformer import (GMMFormerV2, ModelInputError, PooledTokens, uniform_clip_pool,
                                   uniform_segments)

__all__ = ["MODEL_BUILDERS", "GMMFormerV2", "ModelInputError", "PooledTokens", "create_model",
           "uniform_clip_pool", "uniform_segments"]
