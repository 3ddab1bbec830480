# Config validation and input functions shared by the rules; no rules here.
import math
from pathlib import Path

from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")

REPO = Path(workflow.current_basedir).parents[1]
ABLATION_DIR = REPO / "config" / "ablations"
DATA = f"results/{config['dataset']}"
SPLITS = ["train", "val", "test"]


def ablation_file(wildcards):
    path = ABLATION_DIR / f"{wildcards.ablation}.yaml"
    if not path.exists():
        raise ValueError(f"{path}: no such ablation file (config 'ablations' names {wildcards.ablation!r})")
    return str(path)


def n_video_shards():
    c = config["corpus"]
    return math.ceil((c["n_train"] + c["n_val"] + c["n_test"]) / config["frames"]["shard_size"])


def clip_weights(wildcards):
    """The DAG-pretrained tiny CLIP when clip.pretrained is null; else nothing to build."""
    if config["clip"]["pretrained"] is None:
        return f"{DATA}/clip/tiny_clip.pt"
    return []


def run_metrics(ablation):
    return expand(f"{DATA}/runs/{ablation}/seed{{seed}}/metrics.json", seed=config["seeds"])


def analysis_inputs(wildcards):
    """The split the collapse analysis reads (config analysis.split); event kinds on the demo."""
    split = config["analysis"]["split"]
    inputs = {
        "annotations": f"{DATA}/annotations/{split}.jsonl",
        "captions": f"{DATA}/captions/{split}.caption.txt",
        "video_feats": f"{DATA}/features/video_feats.h5",
        "text_feats": f"{DATA}/features/text_feats.h5",
    }
    if config["dataset"] == "demo":
        inputs["labels"] = f"{DATA}/annotations/event_labels.jsonl"
    return inputs


def run_collapse(ablation):
    return expand(f"{DATA}/runs/{ablation}/seed{{seed}}/collapse.json", seed=config["seeds"])
