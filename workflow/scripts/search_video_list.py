"""Snakemake step: the test split's video files, one absolute path a line (prvr index reads the list)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.io import write_text  # noqa: E402
from prvr.sources.annotations import read_tvr_jsonl  # noqa: E402
from prvr.video.video_files import video_files  # noqa: E402


def main(smk, cfg):
    vids = list(dict.fromkeys(q.vid for q in read_tvr_jsonl(smk.input.annotations, bad_spans="keep")))
    paths = video_files(smk.params.video_dir, vids)
    write_text(smk.output[0], "".join(f"{paths[v].resolve()}\n" for v in vids))
    print(f"{len(vids)} test videos")


run_step(snakemake, main)
