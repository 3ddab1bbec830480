"""Value checks of a resolved config: ranges and the rules between keys.

The type checks live in prvr.config (`from_dict`); this module says which *values* are allowed, so
that every config source (config.yaml, --configfile, --config, ablation files, the CLI, a model.pt's
saved config) passes the same rules before anything runs:

    problems(cfg)   # [("train.epochs", "must be >= 1, got 0"), ...], [] when the config is good

Pure functions of the config object (duck-typed, so this module imports nothing from prvr.config).
"""
from __future__ import annotations

import math
import re

from prvr.config_data import RELEASED_SOURCES, captions_are_clip, feature_family

TINY_CLIP = "prvr-tiny-clip"  # the only open_clip model the DAG can pretrain itself (= prvr.features.clip.TINY_CLIP)
NEAR_TIE_BAND = 1e-4  # scores this close to the relevant one are recomputed in float64 (prvr.evaluation.ties)
_DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _at_least(value, low) -> str | None:
    return None if value >= low else f"must be >= {low}, got {value!r}"


def _finite(value, low: float, *, strict: bool, high: float | None = None, high_strict: bool = False) -> str | None:
    """A finite float above `low` (strictly or not) and below `high` (when given)."""
    if not math.isfinite(value):
        return f"must be a finite number, got {value!r}"
    if (value <= low) if strict else (value < low):
        return f"must be {'>' if strict else '>='} {low}, got {value!r}"
    if high is not None and ((value >= high) if high_strict else (value > high)):
        return f"must be {'<' if high_strict else '<='} {high}, got {value!r}"
    return None


def _positive(value) -> str | None:
    return _finite(value, 0.0, strict=True)


def _non_negative(value) -> str | None:
    return _finite(value, 0.0, strict=False)


def _fraction(value) -> str | None:
    """A probability-like value in [0, 1)."""
    return _finite(value, 0.0, strict=False, high=1.0, high_strict=True)


def _device(value) -> str | None:
    return None if _DEVICE.match(value) else f"must be cpu, cuda, cuda:N or mps, got {value!r}"


def _decreasing(values, what: str = "token counts") -> str | None:
    if not values:
        return "must not be empty"
    if any(v < 1 for v in values):
        return f"{what} must be >= 1, got {list(values)}"
    if any(a <= b for a, b in zip(values, values[1:])):
        return f"{what} must strictly decrease, got {list(values)}"
    return None


def _unique_list(values, item_check) -> str | None:
    if not values:
        return "must not be empty"
    if len(set(values)) != len(values):
        return f"has duplicates: {list(values)}"
    for value in values:
        problem = item_check(value)
        if problem:
            return f"{value!r}: {problem}"
    return None


def _top(cfg):
    yield "dataset", None if cfg.dataset and _NAME.match(cfg.dataset) else f"not a dataset name: {cfg.dataset!r}"
    yield "seeds", _unique_list(cfg.seeds, lambda s: None if 0 <= s < 2 ** 32 else "must be in [0, 2**32)")
    yield "ablations", _unique_list(cfg.ablations, lambda a: None if _NAME.match(a) else "not a file name")
    yield "main_table", _unique_list(cfg.main_table, lambda a: None if _NAME.match(a) else "not a file name")


def _corpus(c):
    yield "corpus.seed", _at_least(c.seed, 0)
    for split in ("n_train", "n_val", "n_test"):
        yield f"corpus.{split}", _at_least(getattr(c, split), 1)
    yield "corpus.min_events", _at_least(c.min_events, 1)
    yield "corpus.max_events", _at_least(c.max_events, c.min_events)
    low, high = c.event_seconds
    yield "corpus.event_seconds", (None if math.isfinite(low) and math.isfinite(high) and 0 < low <= high
                                   else f"must be [low, high] with 0 < low <= high, got {list(c.event_seconds)}")
    low, high = c.gap_seconds
    yield "corpus.gap_seconds", (None if math.isfinite(low) and math.isfinite(high) and 0 <= low <= high
                                 else f"must be [low, high] with 0 <= low <= high, got {list(c.gap_seconds)}")
    yield "corpus.scene_keep", (None if 0 <= c.scene_keep <= 1 else f"must be in [0, 1], got {c.scene_keep}")
    yield "corpus.fps", _at_least(c.fps, 1)
    yield "corpus.size", _at_least(c.size, 16)


def _frames(f):
    yield "frames.fps", _positive(f.fps)
    yield "frames.num_frames", None if f.num_frames is None else _at_least(f.num_frames, 1)
    yield "frames.max_frames", _at_least(f.max_frames, 1)
    yield "frames.shard_size", _at_least(f.shard_size, 1)


def _clip(c):
    yield "clip.model", None if c.model.strip() else "must name an open_clip model"
    yield "clip.pretrained", (None if c.pretrained is not None or c.model == TINY_CLIP else
                              f"null means 'pretrain in the DAG', which exists only for {TINY_CLIP}; "
                              f"{c.model} needs an open_clip tag (e.g. openai) or a weights file")
    yield "clip.device", _device(c.device)
    yield "clip.batch_size", _at_least(c.batch_size, 1)
    p = c.pretrain
    yield "clip.pretrain.seed", _at_least(p.seed, 0)
    yield "clip.pretrain.n_pairs", _at_least(p.n_pairs, 1)
    yield "clip.pretrain.epochs", _at_least(p.epochs, 1)
    yield "clip.pretrain.batch_size", _at_least(p.batch_size, 2)  # a contrastive batch needs a negative
    yield "clip.pretrain.lr", _positive(p.lr)
    yield "clip.pretrain.weight_decay", _non_negative(p.weight_decay)
    yield "clip.pretrain.aux_weight", _non_negative(p.aux_weight)


def _model(m):
    for key in ("input_dim", "hidden", "heads", "frame_tokens", "max_query_len"):
        yield f"model.{key}", _at_least(getattr(m, key), 1)
    if m.text_input_dim is not None:
        yield "model.text_input_dim", _at_least(m.text_input_dim, 1)
    if m.heads >= 1 and m.hidden % m.heads:
        yield "model.heads", f"must divide model.hidden={m.hidden}, got {m.heads}"
    yield "model.clip_tokens", (_at_least(m.clip_tokens, 1) or
                                (None if m.clip_tokens <= m.frame_tokens else
                                 f"must be <= model.frame_tokens={m.frame_tokens}, got {m.clip_tokens}"))
    yield "model.gauss_widths", (None if all(math.isfinite(w) and w > 0 for w in m.gauss_widths)
                                 else f"every width must be finite and > 0, got {list(m.gauss_widths)}")
    yield "model.fusion_temperature", _positive(m.fusion_temperature)
    yield "model.input_dropout", _fraction(m.input_dropout)
    yield "model.dropout", _fraction(m.dropout)
    if m.merging.enabled:
        stages = m.merging.stages
        yield "model.merging.stages", (_decreasing(stages) or
                                       (f"must start at most at model.frame_tokens={m.frame_tokens} and end at "
                                        f"model.clip_tokens={m.clip_tokens}, got {list(stages)}"
                                        if stages[0] > m.frame_tokens or stages[-1] != m.clip_tokens else None))


def _loss(l, clip_tokens: int):
    for key in ("nce_weight_clip", "nce_weight_frame", "margin"):
        yield f"loss.{key}", _non_negative(getattr(l, key))
    yield "loss.hard_negative_topk", _at_least(l.hard_negative_topk, 1)
    yield "loss.hard_negative_start_epoch", _at_least(l.hard_negative_start_epoch, 0)
    t = l.tcpl
    for key in ("distance_weight", "angle_weight", "kl_weight"):
        yield f"loss.tcpl.{key}", _non_negative(getattr(t, key))
    yield "loss.tcpl.temperature", _positive(t.temperature)
    yield "loss.tcpl.angle_chunk", _at_least(t.angle_chunk, 1)
    c = l.cbva
    yield "loss.cbva.weight", _non_negative(c.weight)
    yield "loss.cbva.temperature", _positive(c.temperature)
    q = l.query_diverse
    yield "loss.query_diverse.weight", _non_negative(q.weight)
    yield "loss.query_diverse.margin", _finite(q.margin, -2.0, strict=False, high=2.0)
    yield "loss.query_diverse.scale", _positive(q.scale)
    d = l.distill
    yield "loss.distill.weight", _non_negative(d.weight)
    yield "loss.distill.temperature", _positive(d.temperature)
    yield "loss.distill.rate", _positive(d.rate)
    a = c.adaptive
    yield "loss.cbva.adaptive.threshold", _finite(a.threshold, -1.0, strict=False, high=1.0)
    if c.enabled and a.enabled:
        choices = a.segment_choices
        yield "loss.cbva.adaptive.segment_choices", (
            _decreasing(choices, "segment counts") or
            (f"must be at most model.clip_tokens={clip_tokens}, got {list(choices)}" if choices[0] > clip_tokens
             else None))


MSC_MODELS = ("gmmformer_v2", "gmmformer_v2_lite")  # the models whose outputs CBVA reads


def _model_loss(m, l):
    """Loss parts that need a model's outputs: CBVA reads the MSC models' segment tokens."""
    if l.cbva.enabled and m.name not in MSC_MODELS:
        yield "loss.cbva.enabled", f"CBVA needs one of the MSC models ({', '.join(MSC_MODELS)}), not model.name={m.name}"
    if m.merging.enabled and m.name not in MSC_MODELS:
        yield "model.merging.enabled", f"token merging is a clip pooler of the MSC models, not of model.name={m.name}"


def _model_train(m, t):
    """Activation checkpointing recomputes the MSC models' encoder layers (the baselines have none)."""
    if t.activation_checkpointing and m.name not in MSC_MODELS:
        yield "train.activation_checkpointing", (f"supported by the MSC models ({', '.join(MSC_MODELS)}), "
                                                 f"not model.name={m.name}")


def _teacher(m, d, clip_model: str):
    """DL-DKD's teacher is CLIP (their ICCV code: ViT-B/32 frame and caption features in files of
    their own, data.teacher_video_h5 / teacher_text_h5 here); without those files prvr takes it from
    the training features, which then must be CLIP captions as wide as the frames. Checked for the
    configurations that train (training_problems), not for a model that is only evaluated."""
    if m.name != "dl_dkd" or (d.teacher_video_h5 and d.teacher_text_h5):
        return
    files = "give DL-DKD's teacher files (data.teacher_video_h5, data.teacher_text_h5) or leave it out of main_table"
    if not captions_are_clip(d, clip_model):
        yield "model.name", (f"dl_dkd distils from a CLIP teacher, but the {feature_family(d, clip_model)} "
                             f"features have no CLIP captions: {files}")
    elif m.text_input_dim not in (None, m.input_dim):
        yield "model.name", (f"dl_dkd's teacher compares caption and frame features in one space, but they "
                             f"are {m.text_input_dim} and {m.input_dim} wide (model.text_input_dim, "
                             f"model.input_dim): {files}")


def _train(t):
    yield "train.epochs", _at_least(t.epochs, 1)
    yield "train.batch_size", _at_least(t.batch_size, 1)
    yield "train.lr", _positive(t.lr)
    yield "train.warmup", _fraction(t.warmup)
    yield "train.weight_decay", _non_negative(t.weight_decay)
    yield "train.early_stop", _at_least(t.early_stop, 0)
    yield "train.grad_clip", _positive(t.grad_clip)
    yield "train.device", _device(t.device)
    yield "train.num_threads", _at_least(t.num_threads, 0)
    if t.precision == "tf32" and not str(t.device).startswith("cuda"):
        yield "train.precision", f"tf32 needs a cuda train.device (got {t.device!r}); use float32 or bfloat16"


def _eval(e):
    yield "eval.w_clip", _non_negative(e.w_clip)
    yield "eval.w_frame", _non_negative(e.w_frame)
    if math.isfinite(e.w_clip + e.w_frame) and e.w_clip + e.w_frame <= 0:
        yield "eval.w_frame", "eval.w_clip + eval.w_frame must be > 0 (both 0 scores every video alike)"
    yield "eval.ks", _unique_list(e.ks, lambda k: _at_least(k, 1))
    yield "eval.batch_size", _at_least(e.batch_size, 1)
    yield "eval.tie_tolerance", _finite(e.tie_tolerance, 0.0, strict=False, high=NEAR_TIE_BAND, high_strict=True)
    yield "eval.device", _device(e.device)


def _data(dataset: str, d):
    demo = dataset == "demo"
    if demo != (d.videos == "generated"):
        yield "data.videos", (f"'generated' is the demo's source; dataset {dataset!r} needs another" if not demo
                              else f"the demo generates its videos: 'generated', got {d.videos!r}")
    if not demo:
        for split in ("train", "test"):
            yield f"data.{split}.path", (None if getattr(d, split).path else
                                         f"dataset {dataset!r} needs the benchmark's {split} annotation file")
        needs = {"directory": ("video_dir",), "frame_folders": ("video_dir",), "youtube": ("video_dir",),
                 "charades_archive": ("video_dir", "archive_url"),
                 "released_features": ("released_video_h5", "released_text_h5"),
                 "released_bigfile": ("released_bigfile_dir", "released_text_h5")}.get(d.videos, ())
        for key in needs:
            yield f"data.{key}", None if getattr(d, key) else f"data.videos {d.videos!r} needs data.{key}"
    if bool(d.teacher_video_h5) != bool(d.teacher_text_h5):
        given, other = (("teacher_video_h5", "teacher_text_h5") if d.teacher_video_h5
                        else ("teacher_text_h5", "teacher_video_h5"))
        yield f"data.{other}", f"data.{given} needs data.{other} (DL-DKD's teacher reads both)"
        if "charades" in (d.train.format, d.test.format) and d.videos not in RELEASED_SOURCES:
            yield "data.durations", (None if d.durations else
                                     "Charades-STA files have no durations: give Charades_v1_*.csv (length column)")
    yield "data.val_fraction", _finite(d.val_fraction, 0.0, strict=True, high=0.5)
    yield "data.folder_fps", _positive(d.folder_fps)
    yield "data.download_workers", _at_least(d.download_workers, 1)


def _analysis(a):
    yield "analysis.tsne_videos", _at_least(a.tsne_videos, 1)
    yield "analysis.tsne_seed", _at_least(a.tsne_seed, 0)


def problems(cfg) -> list[tuple[str, str]]:
    """Every (dotted key, what is wrong) of a full Config, in file order; [] when all values are allowed."""
    checks = [_top(cfg), _data(cfg.dataset, cfg.data), _corpus(cfg.corpus), _frames(cfg.frames), _clip(cfg.clip), _model(cfg.model),
              _loss(cfg.loss, cfg.model.clip_tokens), _model_loss(cfg.model, cfg.loss),
              _model_train(cfg.model, cfg.train), _train(cfg.train),
              _eval(cfg.eval), _analysis(cfg.analysis)]
    return [(key, problem) for check in checks for key, problem in check if problem]


def training_problems(cfg) -> list[tuple[str, str]]:
    """What else a configuration that is trained on its config's features must satisfy (the teacher)."""
    return [(key, problem) for key, problem in _teacher(cfg.model, cfg.data, cfg.clip.model) if problem]
