# Config validation and input functions shared by the rules; no rules here.
import math
import os
import sys
from pathlib import Path

REPO = Path(workflow.current_basedir).parents[1]
sys.path.insert(0, str(REPO))  # prvr importable without installing it (conda envs)
from prvr.config import to_dict, training_settings  # noqa: E402
from prvr.config_data import RELEASED_SOURCES  # noqa: E402
from prvr.config_sources import REFERENCE, Layer, check_ablations, check_workflow_config  # noqa: E402
from prvr.errors import PrvrError  # noqa: E402
from prvr.sources.benchmarks import split_sources  # noqa: E402
from prvr.store import layout  # noqa: E402


def checkout_path(*parts):
    """A file of the checkout as a job input, relative to the working directory: moving or copying a
    checkout with its results then keeps each job's set of inputs (absolute paths would change it and
    rerun every training)."""
    return Path(os.path.relpath(REPO.joinpath(*parts)))


ABLATION_DIR = checkout_path("config", "ablations")


def config_layers():
    """Snakemake's config sources in its order: configfile: directives, --configfile, --config."""
    given = [str(p) for p in workflow.overwrite_configfiles or []]  # --configfile, in order
    directives = [str(p) for p in workflow.configfiles if str(p) not in given]  # Snakemake lists given first
    layers = [Layer.file(path) for path in dict.fromkeys(directives + given)]
    return layers + [Layer("--config", dict(workflow.config_settings.config), text=True)]


# One validation for every source (prvr.config_sources): a bad value stops here with one line naming
# the file (or --config) and the key; the typed, complete config replaces Snakemake's dict.
try:
    CFG, ABLATIONS = check_workflow_config(config_layers(), REPO)  # ABLATIONS: every trained row's config
except PrvrError as err:
    sys.exit(f"prvr config error: {err}")
config.clear()
config.update(to_dict(CFG))

DATA = f"results/{config['dataset']}"
TRAINED = list(dict.fromkeys([*CFG.ablations, *CFG.main_table]))  # every configuration the DAG trains
REPORTED = checkout_path("config", "reported.yaml")  # the main table's reported numbers and their sources
# The paper's t-SNE figure sets the first MSC model (gmmformer_v2*) of main_table, the baseline, beside
# the last, the full method; fewer than two MSC rows: no such figure.
MSC_ROWS = [n for n in CFG.main_table if ABLATIONS[n].model.name.startswith("gmmformer_v2")]
COMPARE_ROWS = [MSC_ROWS[0], MSC_ROWS[-1]] if len(MSC_ROWS) > 1 else []
SPLITS = ["train", "val", "test"]
DEMO = CFG.dataset == "demo"
RELEASED = CFG.data.videos in RELEASED_SOURCES  # features come ready-made
SOURCE = CFG.data.videos
CHECKPOINT_FORMATS = list(config["checkpoints"])  # msc, gmmformer_v2, gmmformer_v1, ms_sl, dl_dkd
CHECKPOINTS = {fmt: path for fmt, path in config["checkpoints"].items() if path}  # released files to evaluate


def ablation_file(wildcards):
    return str(ABLATION_DIR / f"{wildcards.ablation}.yaml")


def row_config(name):
    """A configuration's full config (the listed rows are checked at start, others when asked for)."""
    if name not in ABLATIONS:
        ABLATIONS.update(check_ablations(CFG, ABLATION_DIR, [name]))
    return ABLATIONS[name]


PER_SEED = config["train_jobs"] == "per_seed"  # else one train job per configuration, all its seeds
TRAIN_JOB_LOG = "logs/train/{ablation}/seed{seed}.log" if PER_SEED else "logs/train/{ablation}.log"
TRAIN_JOB_BENCHMARK = "benchmarks/train/{ablation}/seed{seed}.tsv" if PER_SEED else "benchmarks/train/{ablation}.tsv"


def train_job_files(name):
    """A train job's output `name` (model.pt, ...): the {seed} wildcard's file per seed, else every
    seed's file of the configuration, in config seeds order."""
    if PER_SEED:
        return f"{DATA}/runs/{{ablation}}/seed{{seed}}/{name}"
    return [f"{DATA}/runs/{{ablation}}/seed{seed}/{name}" for seed in config["seeds"]]


def train_priority(wildcards):
    """Which train jobs Snakemake starts first when the cores are busy: the side-by-side figures'
    configurations (COMPARE_ROWS), so those figures run beside the other trainings instead of after the
    last; then the method's own rows (gmmformer_v2*, the longest trainings: in the demo's benchmark files
    124-154 s against 49-82 s for the other papers' models, 8 jobs sharing 2 cores); the others last, so
    the run ends on short jobs. Order only: no job's output depends on it."""
    if wildcards.ablation in COMPARE_ROWS:
        return 2
    return 1 if row_config(wildcards.ablation).model.name.startswith("gmmformer_v2") else 0


def run_settings(wildcards):
    """What a (configuration, seed)'s weights depend on besides its inputs: a change reruns it."""
    return training_settings(row_config(wildcards.ablation))


def torch_threads(wildcards):
    """Threads of a configuration's train or evaluate job, whose torch work follows its
    train.num_threads: that many, or for 0 (torch's default: every core) the cores Snakemake was
    given (--cores; 1 under a cluster executor, whose profile keeps jobs single-threaded). Snakemake
    sets OMP_NUM_THREADS to a job's threads, and torch's default follows it: without this a job with
    0 ran on one thread."""
    num_threads = row_config(wildcards.ablation).train.num_threads
    return num_threads if num_threads > 0 else workflow.cores


def gpus_for(device):
    """Resource `gpu` of a rule whose work runs on `device` (SLURM gives it a GPU node)."""
    return 1 if device.startswith("cuda") else 0


def benchmark_sources(split):
    """The config data.<source> entries a split is converted from (prvr.sources.benchmarks)."""
    return split_sources(CFG.data, CFG.eval.selection, split)


def benchmark_annotation_files(wildcards):
    """The benchmark's own files a split is made from: a change of one reruns that split's conversion."""
    d = CFG.data
    names = benchmark_sources(wildcards.split)
    return {**{n: getattr(d, n).path for n in names}, **{f"durations_{i}": path for i, path in enumerate(d.durations)}}


def benchmark_split_settings(wildcards):
    """What a split's conversion depends on besides its files: their formats, the span policy and, for
    train and val, how val is chosen."""
    data = config["data"]
    settings = {n: data[n] for n in benchmark_sources(wildcards.split)}
    settings.update(bad_spans=data["bad_spans"], durations=data["durations"])
    if wildcards.split != "test":
        settings.update(val=data["val"], val_fraction=data["val_fraction"], selection=config["eval"]["selection"])
    return settings


def missing_videos(wildcards):
    """ActivityNet from YouTube: the split's ids that could not be fetched (left out of lists and captions)."""
    return {"missing": f"{DATA}/missing_videos/{wildcards.split}.tsv"} if SOURCE == "youtube" else {}


def video_source(wildcards):
    """What must exist before decoding: the corpus, a finished download (of the job's split; the test
    split's for rules without one), or the user's folder."""
    if DEMO:
        return {"videos": f"{DATA}/videos"}
    if SOURCE == "charades_archive":
        return {"download": f"{DATA}/downloads/archive.json"}
    if SOURCE == "youtube":
        return {"download": f"{DATA}/downloads/youtube/{getattr(wildcards, 'split', 'test')}.json"}
    if RELEASED:
        return {}  # features come ready-made: nothing to decode
    return {"videos": CFG.data.video_dir}  # directory or frame_folders: supplied by the user


def video_sources(wildcards):
    """Every listed video of the split as it is now (names, sizes, modification times), hashed: a params
    value of the merge, so Snakemake re-extracts the features when a video was replaced or deleted
    (it dates a folder input by the folder alone; the shards are temp, so all of them rerun)."""
    from prvr.stages import sources_fingerprint_of_list
    videos_dir = Path(video_source(wildcards).get("videos", CFG.data.video_dir))
    listing = checkpoints.video_list.get(split=wildcards.split).output[0]
    return sources_fingerprint_of_list(CFG, videos_dir, Path(listing))


def video_shards(wildcards):
    """The shards of the split's video list (known once its video_list checkpoint has run)."""
    with open(checkpoints.video_list.get(split=wildcards.split).output[0]) as listing:
        n_videos = sum(1 for line in listing if line.strip())
    n_shards = max(1, math.ceil(n_videos / CFG.frames.shard_size))
    return expand(f"{DATA}/features/shards/{wildcards.split}_{{shard}}.h5", shard=range(n_shards))


def text_store(split):
    """A split's caption features (each split its own store, so an edit of one split's captions
    reruns nothing that reads only the others)."""
    return str(layout.split_text_store(Path(DATA), split))


def video_store(split):
    """A split's video features (decoded, or imported from a release), a store per split."""
    return str(layout.split_video_store(Path(DATA), split))


def selection_split(ablation):
    """The split the epoch is selected on: val, or the reported test split (eval.selection)."""
    return "test" if row_config(ablation).eval.selection == "reported_split" else "val"


def split_cache(ablation, split):
    """The split's resampled feature cache at this configuration's frame_tokens / max_query_len."""
    model = row_config(ablation).model
    return f"{DATA}/cache/ft{model.frame_tokens}_q{model.max_query_len}/{split}"


def train_inputs(wildcards):
    """A training run's captions and stores of the train split and of the selection split, and their
    feature caches where data.feature_cache is on."""
    val = selection_split(wildcards.ablation)
    inputs = {"train_captions": f"{DATA}/captions/train.caption.txt", "val_captions": f"{DATA}/captions/{val}.caption.txt",
              "video_feats": video_store("train"), "text_feats": text_store("train"),
              "val_video_feats": video_store(val), "val_text_feats": text_store(val)}
    if CFG.data.feature_cache:
        inputs.update(cache=split_cache(wildcards.ablation, "train"), val_cache=split_cache(wildcards.ablation, val))
    return inputs


def test_cache(wildcards):
    """The test split's feature cache at this configuration's settings, where data.feature_cache is on."""
    return {"cache": split_cache(wildcards.ablation, "test")} if CFG.data.feature_cache else {}


def teacher_files(wildcards):
    """DL-DKD's own CLIP teacher stores (data.teacher_video_h5 / teacher_text_h5, imported) for a
    dl_dkd row when they are configured; nothing for any other row."""
    if not CFG.data.teacher_video_h5 or row_config(wildcards.ablation).model.name != "dl_dkd":
        return {}
    return {"teacher_video": f"{DATA}/features/teacher_video.h5", "teacher_text": f"{DATA}/features/teacher_text.h5"}


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
        "video_feats": video_store(split),
        "text_feats": text_store(split),
    }
    if DEMO:
        inputs["labels"] = f"{DATA}/annotations/event_labels.jsonl"
    return inputs


def tsne_inputs(wildcards):
    """The figure of a configuration reads its first seed's model; the reference's reads none."""
    inputs = analysis_inputs(wildcards)
    if wildcards.ablation != REFERENCE:
        inputs["model"] = f"{DATA}/runs/{wildcards.ablation}/seed{config['seeds'][0]}/model.pt"
    return inputs


def costs_file():
    """The bench_costs file of this dataset's shape, if one has been written (`python -m
    bench.bench_costs --shape <dataset>`); the main table says "not measured" without it."""
    path = Path(f"results/costs_{config['dataset']}.json")
    return {"costs": str(path)} if path.is_file() else {}


def main_table_inputs(wildcards):
    """Every main_table row's metrics (all seeds), ablation file and parameter count, each configured
    released checkpoint's metrics, reported.yaml, and the bench costs file when there is one."""
    inputs = {"reported": str(REPORTED), **costs_file()}
    for name in CFG.main_table:
        inputs[f"metrics_{name}"] = run_files(name, "metrics.json")
        inputs[f"ablation_{name}"] = str(ABLATION_DIR / f"{name}.yaml")
        inputs[f"params_{name}"] = f"{DATA}/runs/{name}/parameters.json"
    for release in CHECKPOINTS:  # released checkpoints, evaluated here
        inputs[f"released_{release}"] = f"{DATA}/released/{release}/metrics.json"
    return inputs


def first_seed_model(wildcards):
    """The configuration's model.pt of the first seed (its parameter count is every seed's)."""
    return f"{DATA}/runs/{wildcards.ablation}/seed{config['seeds'][0]}/model.pt"


def tsne_compare_inputs(wildcards):
    """The analysis split's files and the first seed's model of each COMPARE_ROWS configuration."""
    if not COMPARE_ROWS:
        raise PrvrError("results/figures/tsne_compare.png needs two MSC models (gmmformer_v2*) in config main_table")
    seed = config["seeds"][0]
    return {**analysis_inputs(wildcards), "models": [f"{DATA}/runs/{n}/seed{seed}/model.pt" for n in COMPARE_ROWS]}


def benchmark_files(wildcards):
    """The benchmark files of a run, by job name: every train job (one per seed or per configuration:
    config train_jobs), and the corpus and tiny-CLIP pretraining where the DAG makes them."""
    if PER_SEED:
        files = {f"train {n} seed {s}": TRAIN_JOB_BENCHMARK.format(ablation=n, seed=s)
                 for n in TRAINED for s in config["seeds"]}
    else:
        seeds = " ".join(str(s) for s in config["seeds"])
        files = {f"train {n} seeds {seeds}": TRAIN_JOB_BENCHMARK.format(ablation=n) for n in TRAINED}
    if config["clip"]["pretrained"] is None and not RELEASED:  # released features: no CLIP is built
        files["pretrain_clip"] = "benchmarks/pretrain_clip.tsv"
    if DEMO:
        files["generate_corpus"] = "benchmarks/generate_corpus.tsv"
    return files
