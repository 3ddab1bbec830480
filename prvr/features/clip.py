"""CLIP frame and caption features through open_clip, for any open_clip model and the demo's tiny one.

    enc = load_clip("ViT-L-14", "openai")              # or load_clip("prvr-tiny-clip", "tiny_clip.pt")
                                                       # random init only with allow_random=True
    frame_feats = encode_frames(enc, frames)           # (T, D) float32, frames (T, H, W, 3) uint8
    token_feats = encode_text_tokens(enc, captions)    # list of (L_i, D) float32, last row = end-of-text

Weights always go through `open_clip.create_model_and_transforms(name, pretrained=...)`, so every
open_clip spelling takes the same path: a built-in architecture ("ViT-L-14", or "ViT-L/14") with
`pretrained` an open_clip tag (downloaded) or a local weights file (.pt/.bin/.safetensors; float16
files too: open_clip copies them into the float32 model), or an "hf-hub:org/repo" or
"local-dir:/path" name that brings its own weights (then `pretrained` must be empty). Features are
stored raw: projected embeddings, NOT L2-normalised (the PRVR models normalise or project them
themselves). Token features need a causal CLIP text tower (CLIP, CustomTextCLIP); other towers
raise ClipError. The architecture "prvr-tiny-clip" is registered from
model_configs/prvr-tiny-clip.json when this module is imported.

Device: on CPU everything runs in float32 under torch.inference_mode. On CUDA the uint8 frames of a
batch go to the GPU in one copy (resize/normalise run there) and the towers run under
torch.autocast("cuda", dtype=torch.float16) (ClipEncoder.autocast, default on); the features are
returned, and stored, as float32 either way. Measured on an H200 with a random ViT-L-14: frame and
end-of-text features within cosine 0.99999 of CPU float32 (largest difference 0.2% of the largest
value), 1820 frames/s against 280 frames/s in float32.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from prvr.errors import PrvrError

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
TINY_CLIP = "prvr-tiny-clip"


class ClipError(PrvrError, RuntimeError):
    """A CLIP model cannot be loaded or used as asked; one-line message."""


def register_model_configs() -> None:
    """Make the package's open_clip architectures (prvr-tiny-clip) known to open_clip (idempotent)."""
    names = {p.stem for p in MODEL_CONFIG_DIR.glob("*.json")}
    if not names.issubset(open_clip.list_models()):
        open_clip.add_model_config(MODEL_CONFIG_DIR)


register_model_configs()


@dataclass
class ClipEncoder:
    """An open_clip model in eval mode with what is needed to feed it."""
    model: torch.nn.Module
    tokenizer: Callable
    name: str
    pretrained: str | None
    device: torch.device
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    batch_size: int = 256
    autocast: bool = True  # float16 autocast on CUDA (no effect on CPU)

    @property
    def embed_dim(self) -> int:
        """D of the projected embeddings (= ModelConfig.input_dim for this encoder's features)."""
        return int(self.model.visual.output_dim)

    def describe(self) -> dict:
        """Provenance attributes for feature files."""
        return {"clip_model": self.name, "clip_pretrained": str(self.pretrained or "random-init"),
                "image_size": self.image_size, "embed_dim": self.embed_dim, "l2_normalised": False}


SCHEMAS = ("hf-hub:", "local-dir:")  # open_clip model names that bring their own config and weights


def _schema(name: str) -> str | None:
    return next((schema for schema in SCHEMAS if name.startswith(schema)), None)


def _builtin_name(name: str) -> str:
    """open_clip's own spelling of a built-in architecture ("ViT-L/14" -> "ViT-L-14"); schemas as given."""
    return name if _schema(name) else name.replace("/", "-")


def _quick_gelu_for(name: str, pretrained: str | None) -> bool:
    """OpenAI's CLIP weights were trained with QuickGELU; open_clip only warns if it is not forced."""
    if not pretrained or _schema(name) or not open_clip.is_pretrained_cfg(_builtin_name(name), pretrained):
        return False
    return bool(open_clip.get_pretrained_cfg(_builtin_name(name), pretrained).get("quick_gelu", False))


def _check_sources(name: str, pretrained: str | None) -> None:
    """Fail early, in one line, on an unknown architecture or a missing weights file."""
    schema = _schema(name)
    if schema:
        if pretrained:
            raise ClipError(f"clip.model {name!r} brings its own weights: leave clip.pretrained empty "
                            f"(got {pretrained!r}; open_clip would ignore it)")
        folder = Path(name[len(schema):])
        if schema == "local-dir:" and not (folder / "open_clip_config.json").is_file():
            raise ClipError(f"{folder}: no open_clip_config.json (clip.model {name!r})")
        return
    name = _builtin_name(name)
    if name not in open_clip.list_models():
        raise ClipError(f"unknown open_clip model {name!r} (see open_clip.list_models(); "
                        f"the demo's is {TINY_CLIP!r})")
    if pretrained and not open_clip.is_pretrained_cfg(name, pretrained) and not Path(pretrained).is_file():
        tags = open_clip.list_pretrained_tags_by_model(name)
        known = f"; known tags: {', '.join(tags[:6])}{', ...' if len(tags) > 6 else ''}" if tags else ""
        raise ClipError(f"{pretrained}: CLIP weights file not found and not an open_clip tag "
                        f"of {name}{known}")


def load_clip(name: str, pretrained: str | None, device: str = "cpu", batch_size: int = 256,
              allow_random: bool = False, **create_kwargs) -> ClipEncoder:
    """Build `name` with weights `pretrained` (open_clip tag or file path), eval mode, on `device`.

    pretrained=None (random init) is an error unless allow_random=True: features of an untrained
    CLIP are meaningless, and open_clip itself would only log a warning. The same holds for an
    "hf-hub:"/"local-dir:" name whose weights do not load (open_clip's require_pretrained).
    """
    pretrained = str(pretrained) if pretrained else None
    _check_sources(name, pretrained)
    if pretrained is None and not allow_random and not _schema(name):
        raise ClipError(f"clip.model {name!r}: no weights (clip.pretrained is null and no --weights); "
                        f"give an open_clip tag or a weights file")
    name = _builtin_name(name)
    create_kwargs.setdefault("force_quick_gelu", _quick_gelu_for(name, pretrained))
    create_kwargs.setdefault("require_pretrained", not allow_random)
    try:
        model, _, _ = open_clip.create_model_and_transforms(name, pretrained=pretrained, device=device,
                                                            **create_kwargs)
    except (RuntimeError, OSError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ClipError(f"cannot load {name} with weights {pretrained}: {first_line[:300]}") from None
    model.eval()
    pp_cfg = model.visual.preprocess_cfg
    size = pp_cfg["size"]
    image_size = int(size if isinstance(size, int) else size[0])
    return ClipEncoder(model=model, tokenizer=open_clip.get_tokenizer(name), name=name,
                       pretrained=pretrained, device=torch.device(device), image_size=image_size,
                       mean=tuple(pp_cfg["mean"]), std=tuple(pp_cfg["std"]), batch_size=batch_size)


def frames_to_input(encoder: ClipEncoder, frames: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> normalised float (B, 3, S, S) as open_clip's val preprocessing would.

    Frames from decode_video(size=S) are already S x S; others get a bicubic short-side resize and a
    centre crop here (torch's antialiased bicubic, close to but not bit-equal with PIL's).
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(encoder.device)
    x = x.permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, W) in [0, 1]
    size = encoder.image_size
    height, width = x.shape[-2:]
    if (height, width) != (size, size):
        scale = size / min(height, width)
        new_hw = (max(size, round(height * scale)), max(size, round(width * scale)))
        x = F.interpolate(x, size=new_hw, mode="bicubic", antialias=True, align_corners=False).clamp_(0, 1)
        top, left = int(round((new_hw[0] - size) / 2)), int(round((new_hw[1] - size) / 2))
        x = x[..., top:top + size, left:left + size]
    mean = torch.tensor(encoder.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(encoder.std, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def inference(encoder: ClipEncoder) -> contextlib.ExitStack:
    """torch.inference_mode(), plus float16 autocast when the encoder runs on CUDA (and .autocast)."""
    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode())
    if encoder.device.type == "cuda" and encoder.autocast:
        stack.enter_context(torch.autocast("cuda", dtype=torch.float16))
    return stack


def encode_frames(encoder: ClipEncoder, frames: np.ndarray) -> np.ndarray:
    """Projected (not normalised) image embeddings of every frame: (T, H, W, 3) uint8 -> (T, D) float32.

    Batches of encoder.batch_size frames: each batch goes to the device once (as uint8), the
    embeddings stay there and come back to the host in one copy per call.
    """
    if len(frames) == 0:
        return np.zeros((0, encoder.embed_dim), dtype=np.float32)
    with inference(encoder):
        out = [encoder.model.encode_image(frames_to_input(encoder, frames[start:start + encoder.batch_size]))
               .float() for start in range(0, len(frames), encoder.batch_size)]  # (B, D) each
        return torch.cat(out).cpu().numpy()  # (T, D) float32


def _text_parts(model: torch.nn.Module):
    """(embed_fn, transformer, ln_final, text_projection, pool_type, eos_id) of a CLIP text tower.

    embed_fn(tokens (B, L)) -> (x (B, L, W), causal mask (L, L)) works for any L <= context length.
    """
    if isinstance(model, open_clip.CLIP):
        def embed(tokens):
            cast_dtype = model.transformer.get_cast_dtype()
            length = tokens.shape[1]
            x = model.token_embedding(tokens).to(cast_dtype)  # (B, L, W)
            x = x + model.positional_embedding[:length].to(cast_dtype)
            return x, model.attn_mask[:length, :length]
        return (embed, model.transformer, model.ln_final, model.text_projection,
                model.text_pool_type, getattr(model, "text_eos_id", None))
    text = getattr(model, "text", None)
    if (isinstance(text, open_clip.transformer.TextTransformer) and text.cls_emb is None
            and not text.use_pad_mask and text.attn_mask is not None):
        def embed(tokens):
            x, _ = text._embeds(tokens)
            return x, text.attn_mask[:tokens.shape[1], :tokens.shape[1]]
        return embed, text.transformer, text.ln_final, text.text_projection, text.pool_type, text.eos_id
    raise ClipError(f"token features are not supported for {type(model).__name__} "
                    f"with text tower {type(text).__name__} (needs a causal CLIP text transformer)")


def _pooled_positions(tokens: torch.Tensor, pool_type: str, eos_id: int | None) -> torch.Tensor:
    """Index of the token whose feature is the pooled text embedding (CLIP: end-of-text)."""
    if pool_type == "argmax":  # CLIP's eot has the largest id in the vocabulary
        return tokens.argmax(dim=-1)
    if pool_type == "eos":
        return (tokens == eos_id).int().argmax(dim=-1)
    raise ClipError(f"text pool type {pool_type!r} has no end-of-text token to stop at")


def text_token_features(model: torch.nn.Module, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected token features (B, L, D) and end-of-text positions (B,) of tokenised captions.

    Only positions up to the batch's last end-of-text token are computed: with CLIP's causal mask
    no position attends to later ones, so this equals the full 77-token pass at those positions
    (and is several times cheaper for short captions). Differentiable (used by pretraining).
    """
    embed, transformer, ln_final, projection, pool_type, eos_id = _text_parts(model)
    ends = _pooled_positions(tokens, pool_type, eos_id)  # (B,)
    tokens = tokens[:, :int(ends.max()) + 1]  # (B, L)
    x, attn_mask = embed(tokens)  # (B, L, W)
    x = ln_final(transformer(x, attn_mask=attn_mask))  # (B, L, W)
    if isinstance(projection, torch.nn.Linear):
        x = projection(x)
    elif projection is not None:
        x = x @ projection  # (B, L, D)
    return x, ends


def encode_text_tokens(encoder: ClipEncoder, captions: list[str]) -> list[np.ndarray]:
    """Per-caption token features (L_i, D) float32 for positions 0..eot; row L_i - 1 = encode_text().

    No padding rows: L_i = eot + 1 <= context length (77), as the authors' loader expects (see
    prvr.features.extract)."""
    out: list[np.ndarray] = []
    with inference(encoder):
        for start in range(0, len(captions), encoder.batch_size):
            tokens = encoder.tokenizer(list(captions[start:start + encoder.batch_size])).to(encoder.device)
            x, ends = text_token_features(encoder.model, tokens)  # (B, L, D), (B,)
            feats = x.float().cpu().numpy()
            out.extend(np.ascontiguousarray(feats[i, :end + 1]) for i, end in enumerate(ends.tolist()))
    return out
