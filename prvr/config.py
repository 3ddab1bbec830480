"""Typed configuration for every stage of the pipeline.

Configs are data files (YAML) loaded into nested dataclasses; an unknown key, a value of the wrong
type or out of range (prvr.config_checks) is an error that names the file and the key. Every source
goes through `from_dict`: config.yaml and --configfile/--config in Snakemake (prvr.config_sources),
ablation files, the CLI (`load_config(path)`) and the config saved in a model.pt.

The dataclass defaults are the values of config/config.yaml (the demo scale; a test keeps them
equal), so a partial file given to `prvr <stage> --config` is completed exactly as Snakemake
completes it. The paper's values are in config.yaml's comments and config/README.md.

    cfg = load_config("config/config.yaml")
    cfg = merge(cfg, {"train": {"epochs": 2}})   # overrides, same strictness
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from prvr.config_checks import problems
from prvr.config_data import VIDEO_SOURCES, DataConfig
from prvr.config_losses import LossConfig
from prvr.dataclass_dict import build_dataclass
from prvr.errors import ConfigError
from prvr.yaml_files import read_yaml_mapping


DATASETS = ("demo", "tvr", "activitynet", "charades", "qvhighlights")  # each but demo: config/datasets/<name>.yaml


@dataclass
class CorpusConfig:
    """The generated multi-event demo corpus (prvr.demo.synthetic)."""
    seed: int = 0
    n_train: int = 300
    n_val: int = 100
    n_test: int = 200
    min_events: int = 3
    max_events: int = 6
    event_seconds: tuple[float, float] = (2.0, 5.0)
    gap_seconds: tuple[float, float] = (0.0, 1.0)
    scene_keep: float = 0.5     # chance that an event stays in the previous event's scene
    fps: int = 8
    size: int = 64


@dataclass
class FramesConfig:
    """Decoding (prvr.video.decoding): frames at time-uniform positions (by presentation time, so
    variable-frame-rate files are sampled right), fps per second or num_frames per video.
    backend: "auto" = decord where it is installed, else PyAV; "decord" or "pyav" to force one."""
    fps: float = 2.0
    num_frames: int | None = None
    max_frames: int = 256
    shard_size: int = 150
    backend: str = field(default="auto", metadata={"choices": ("auto", "decord", "pyav")})


@dataclass
class ClipPretrainConfig:
    """In-DAG pretraining of the demo's tiny open_clip model on generated frames and captions."""
    seed: int = 1234
    n_pairs: int = 20000
    epochs: int = 8
    batch_size: int = 256
    lr: float = 5e-3
    weight_decay: float = 0.1
    aux_weight: float = 1.0


@dataclass
class ClipConfig:
    """Which open_clip model encodes frames and captions.

    model: an open_clip architecture name ("ViT-L-14") or "prvr-tiny-clip" (the demo's).
    pretrained: an open_clip tag ("openai") or a path to a weights file; null means "pretrain it in
    the DAG" (only for prvr-tiny-clip: the rule writes results/<dataset>/clip/tiny_clip.pt).
    """
    model: str = "prvr-tiny-clip"
    pretrained: str | None = None
    device: str = "cpu"
    batch_size: int = 256
    pretrain: ClipPretrainConfig = field(default_factory=ClipPretrainConfig)


@dataclass
class MergingConfig:
    """Order-preserving token merging that builds the clip branch (prvr.models.token_merging).

    Off: the clip branch mean-pools frame tokens into model.clip_tokens fixed segments (baseline).
    On: adjacent tokens merge, most similar first, through `stages` token counts (the last one is the
    clip-branch length; the paper's 128 frame tokens go 128 -> 80 -> 52 -> 32).
    """
    enabled: bool = False
    stages: tuple[int, ...] = (24, 16, 8)  # paper: 80, 52, 32 from 128 frame tokens


@dataclass
class DlDkdModelConfig:
    """The DL-DKD student (model.name "dl_dkd", prvr.models.dl_dkd): its inheritance branch is
    distilled from the frozen CLIP teacher (loss.distill); its exploration branch (its ICCV code's
    --double_branch; model.hidden units like the inheritance branch, whose query projection it
    shares) learns from the retrieval loss only. eval.w_clip weighs the exploration branch's score,
    eval.w_frame the inheritance branch's (its code: 0.3 and 0.7)."""
    exploration_branch: bool = True


@dataclass
class ModelConfig:
    """The PRVR model (prvr.models), by `name`:

    "gmmformer_v2": the released GMMFormer-v2 / MSC_PRVR architecture (prvr.models.gmmformer_v2):
      each branch a block of 1 + len(gauss_widths) complete transformer layers in parallel (the
      first without window), Gaussian windows multiplying the logits, fused per position by a
      learned token shared by both branches, softmax at `fusion_temperature`.
    "gmmformer_v2_lite": this project's lighter encoder (prvr.models.gmmformer): one attention
      module with the windows as log priors, one FFN, a per-token linear fusion (not the authors').
    Baselines of the main table (prvr.models.<name>): "ms_sl" (MS-SL: multi-scale sliding-window
    clip proposals, key-clip guided frame attention), "gmmformer_v1" (GMMFormer: Gaussian-window
    attention blocks, attention-pooled frame branch), "dl_dkd" (DL-DKD student: inheritance and
    exploration branches; settings in `dl_dkd`).

    input_dim: the frame features' size; text_input_dim: the caption features' size where it differs
    (MS-SL's release: I3D+ResNet 3,072-d frames, RoBERTa 1,024-d captions; `query_dim(cfg)`).
    input_norm "l2" (authors' loader): every text token, resampled frame and clip-branch token is
    divided by (its L2 norm + 1e-5) before the model; "none": raw features.
    input_dropout: dropout of the input projections and positional embeddings (authors: 0.2);
    dropout: attention probabilities and hidden layers (authors: 0.2).
    """
    name: str = field(default="gmmformer_v2",
                      metadata={"choices": ("gmmformer_v2", "gmmformer_v2_lite", "ms_sl", "gmmformer_v1",
                                            "dl_dkd")})
    input_dim: int = 64
    text_input_dim: int | None = None  # the captions' feature size; None: input_dim (CLIP's two towers)
    hidden: int = 64  # paper: 384
    heads: int = 4
    frame_tokens: int = 32  # paper: 128
    clip_tokens: int = 8  # paper: 32
    gauss_widths: tuple[float, ...] = (0.5, 1.0, 5.0, 10.0, 3.0, 0.1, 8.0)
    fusion_temperature: float = 0.09
    input_norm: str = field(default="l2", metadata={"choices": ("l2", "none")})
    input_dropout: float = 0.2
    dropout: float = 0.2
    max_query_len: int = 77
    merging: MergingConfig = field(default_factory=MergingConfig)
    dl_dkd: DlDkdModelConfig = field(default_factory=DlDkdModelConfig)


@dataclass
class TrainConfig:
    """Training loop (prvr.training).

    optimizer "bert_adam" (authors' code): Adam without bias correction, eps 1e-6, each parameter
    tensor's gradient clipped to norm `grad_clip` separately; "adamw": torch AdamW (bias
    correction, eps 1e-8) after one global gradient-norm clip at `grad_clip`.
    weight_decay_groups "authors": no decay on biases and on the input LayerNorms (the modules the
    released code names LayerNorm); "all": decay on every parameter.
    schedule "bert" (authors' warmup_linear): lr factor p / warmup, then (1 - p) / (1 - warmup)
    at progress p = step / total_steps, so the first step has lr 0; "shifted" (this project's
    earlier schedule): (step + 1) / ceil(total_steps * warmup) during warm-up, so step k gets
    bert's warm-up factor of step k + 1, then linear decay to 0.
    early_stop: stop once more than this many epochs in a row fail to beat the best val SumR
    (authors' max_es_cnt: 10 -> training stops after the 11th failing epoch).
    activation_checkpointing: recompute each encoder layer's activations in the backward pass
    instead of keeping them (less memory at the TVR shape, more time; the same numbers).
    precision: "float32" (authors'), "tf32" (cuda) or "bfloat16": prvr.training.precision.
    """
    epochs: int = 5  # paper: 100
    batch_size: int = 64  # paper: 128
    lr: float = 3e-4
    warmup: float = 0.01
    weight_decay: float = 0.01
    optimizer: str = field(default="bert_adam", metadata={"choices": ("bert_adam", "adamw")})
    weight_decay_groups: str = field(default="authors", metadata={"choices": ("authors", "all")})
    schedule: str = field(default="bert", metadata={"choices": ("bert", "shifted")})
    early_stop: int = 4  # authors: 10
    grad_clip: float = 1.0
    device: str = "cpu"
    num_threads: int = 1
    activation_checkpointing: bool = False
    precision: str = field(default="float32", metadata={"choices": ("float32", "tf32", "bfloat16")})


@dataclass
class EvalConfig:
    """Scoring and metrics (prvr.evaluation).

    ties: how a query's rank counts candidates scored exactly like its relevant video:
    "expected" (default) the mean rank under uniformly random tie-breaking, so R@K adds
    P(rank <= K) = clip((K - h) / (t + 1), 0, 1) for h strictly higher and t tied candidates;
    "optimistic" ignores tied candidates; "pessimistic" ranks every tied candidate first.
    tie_tolerance: scores (cosines) closer than this to the relevant video's count as tied with it;
    near ties are recomputed in float64 first, so a tie does not depend on chunking or the CPU
    (prvr.evaluation.ties).
    selection: the split the epoch is selected on: "val" (held out: data.val or a share of train)
    or "reported_split" (the authors' protocol: the test split that is also reported).
    device: where evaluate, collapse and t-SNE run a trained model (whatever train.device was);
    "cuda" also gives those rules a GPU on SLURM.
    precision: the arithmetic of encoding videos and queries for evaluation: "float32", or
    "bfloat16" (autocast; faster on CPUs with avx512_bf16/AMX and on GPUs; scores are ranked in float64
    either way). It changes the numbers, so it is part of the run identity.
    """
    w_clip: float = 0.4
    w_frame: float = 0.6
    ks: tuple[int, ...] = (1, 5, 10, 100)
    batch_size: int = 512
    ties: str = field(default="expected", metadata={"choices": ("expected", "optimistic", "pessimistic")})
    tie_tolerance: float = 1e-6
    selection: str = field(default="val", metadata={"choices": ("val", "reported_split")})
    device: str = "cpu"
    precision: str = field(default="float32", metadata={"choices": ("float32", "bfloat16")})


@dataclass
class AnalysisConfig:
    """Collapse analysis (prvr.evaluation.analysis), t-SNE figures: split, videos per figure, t-SNE seed."""
    split: str = field(default="test", metadata={"choices": ("val", "test")})
    tsne_videos: int = 6
    tsne_seed: int = 0


@dataclass
class CheckpointsConfig:
    """Released checkpoints the workflow imports (prvr.checkpoints) and evaluates on this dataset's
    test split beside the trained rows: per release format, the file its own code saved, or null.
    Each becomes a main-table row "released checkpoint, evaluated here"."""
    msc: str | None = None
    gmmformer_v2: str | None = None
    gmmformer_v1: str | None = None
    ms_sl: str | None = None
    dl_dkd: str | None = None


@dataclass
class Config:
    """One run: a dataset, its features, one model configuration, its training and evaluation."""
    dataset: str = field(default="demo", metadata={"choices": DATASETS})
    seeds: tuple[int, ...] = (1, 2, 3)
    train_jobs: str = field(default="per_configuration", metadata={"choices": ("per_configuration", "per_seed")})
    ablations: tuple[str, ...] = ("baseline", "tcpl", "cbva", "merging", "adaptive", "cbva_nohead",
                                  "full_tcpl_kl", "full_cbva_infonce", "full_adaptive_weights", "full_summary")
    main_table: tuple[str, ...] = ("ms_sl", "gmmformer_v1", "baseline", "dl_dkd", "adaptive")
    data: DataConfig = field(default_factory=DataConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    frames: FramesConfig = field(default_factory=FramesConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    checkpoints: CheckpointsConfig = field(default_factory=CheckpointsConfig)


def from_dict(data: dict, source: str = "<config>", cls=Config, text: bool = False, check_values: bool = True):
    """Build a config dataclass from a plain dict; `source` names the file in error messages.

    A full `Config` also passes the value checks of prvr.config_checks (the first problem is raised)
    unless check_values is False (one source of several, checked once merged: prvr.config_sources).
    text: the values came from a command line as strings (Snakemake's --config)."""
    try:
        cfg = build_dataclass(cls, data or {}, text)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}", err.key) from None
    if cls is Config and check_values:
        for key, problem in problems(cfg)[:1]:
            raise ConfigError(f"{source}: {key}: {problem}", key)
    return cfg


def to_dict(cfg) -> dict:
    """Plain-data form (tuples as lists) for YAML/JSON provenance files."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def deep_merge(base: dict, new: dict) -> dict:
    """A copy of `base` with `new` merged in, nested mappings key by key (later values win)."""
    out = dict(base)
    for k, v in new.items():
        out[k] = deep_merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def merge(cfg, overrides: dict, source: str = "<overrides>", check_values: bool = True):
    """Return a copy of `cfg` with nested `overrides` applied (unknown keys are errors; value checks
    unless check_values is False)."""
    return from_dict(deep_merge(to_dict(cfg), overrides or {}), source, type(cfg), check_values=check_values)


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; a missing file, bad YAML or a duplicate key is a one-line ConfigError."""
    return read_yaml_mapping(path)


def query_dim(model: ModelConfig) -> int:
    """The caption features' size the query encoder reads: text_input_dim, or input_dim when unset."""
    return model.text_input_dim if model.text_input_dim is not None else model.input_dim


BY_SOURCE = "by_source"  # a dataset file's settings that follow data.videos: {released_bigfile: {model: ...}}


def split_by_source(mapping: dict, source: str) -> tuple[dict, dict[str, dict]]:
    """(a dataset file's mapping without its by_source section, that section): the sizes and settings
    of another feature family (MS-SL's I3D+RoBERTa release: other input sizes, 30 query tokens),
    applied when data.videos names it. Every section is type-checked here, selected or not."""
    mapping = dict(mapping)
    sections = mapping.pop(BY_SOURCE, None) or {}
    where = f"{source}: {BY_SOURCE}"
    if not isinstance(sections, dict):
        raise ConfigError(f"{where}: expected a mapping of data.videos values", BY_SOURCE)
    for videos, section in sections.items():
        if videos not in VIDEO_SOURCES or not isinstance(section, dict):
            raise ConfigError(f"{where}.{videos}: expected a mapping under one of {', '.join(VIDEO_SOURCES)}",
                              BY_SOURCE)
        from_dict(section, f"{where}.{videos}", check_values=False)
    return mapping, sections


def with_source_settings(mapping: dict, sections: dict[str, dict], videos: str) -> dict:
    """`mapping` with the by_source section of `videos` merged over it (later keys win)."""
    return deep_merge(mapping, sections.get(videos, {}))


def load_config(path: str | Path, overrides: dict | None = None) -> Config:
    """Load config/config.yaml (or any file of the same shape, a dataset file's by_source section
    applied for its data.videos) into a `Config`."""
    mapping, sections = split_by_source(load_yaml(path), str(path))
    videos = (mapping.get("data") or {}).get("videos", DataConfig.videos)
    cfg = from_dict(with_source_settings(mapping, sections, videos), str(path))
    return merge(cfg, overrides, str(path)) if overrides else cfg


def config_hash(cfg) -> str:
    """Short stable hash of a resolved config, for provenance."""
    text = json.dumps(to_dict(cfg), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


EVAL_KEYS_FOR_TRAINING = ("w_clip", "w_frame", "ks", "ties", "tie_tolerance", "selection", "precision")  # model selection on val SumR uses them


def training_settings(cfg: Config) -> dict:
    """Exactly the settings a training run's weights depend on, beside its seed and input files:
    model, loss, train and the eval keys of model selection. Not in it: dataset, seeds, ablations
    (names, not settings), corpus/frames/clip (they reach training only through the feature files,
    whose sha256 the run identity holds), analysis, eval.batch_size and eval.device (eval.precision
    is in: it changes the val scores that select the epoch)."""
    full = to_dict(cfg)
    return {"model": full["model"], "loss": full["loss"], "train": full["train"],
            "eval": {k: full["eval"][k] for k in EVAL_KEYS_FOR_TRAINING}}


def training_hash(cfg: Config) -> str:
    """Short stable hash of `training_settings(cfg)`: the config part of a run's identity."""
    text = json.dumps(training_settings(cfg), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
