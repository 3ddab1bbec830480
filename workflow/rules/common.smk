# Config validation and input functions shared by the rules; no rules here.
import math
from pathlib import Path

from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")

REPO = Path(workflow.current_basedir).parents[1]
ABLATION_DIR = REPO / "config" / "ablations"
DATA = f"results/{config['dataset']}"
SPLITS = ["train", "val", "test"]
REFERENCE = "clip_input"  # the untrained reference row and figure: CLIP input features, no model
if REFERENCE in config["ablations"]:
    raise ValueError(f"config ablations: {REFERENCE!r} is reserved for the untrained reference row")


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


def run_files(ablation, name):
    """One file per seed of a configuration's runs, e.g. run_files("baseline", "metrics.json")."""
    return expand(f"{DATA}/runs/{ablation}/seed{{seed}}/{name}", seed=config["seeds"])


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


def tsne_inputs(wildcards):
    """The figure of a configuration reads its first seed's model; the reference's reads none."""
    inputs = analysis_inputs(wildcards)
    if wildcards.ablation != REFERENCE:
        inputs["model"] = f"{DATA}/runs/{wildcards.ablation}/seed{config['seeds'][0]}/model.pt"
    return inputs
