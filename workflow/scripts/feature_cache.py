"""Snakemake step: one split's resampled float16 feature cache, shared by every run (data.feature_cache)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.store.feature_cache import build_feature_cache  # noqa: E402


def main(smk, cfg):
    inp, w = smk.input, smk.wildcards
    print(build_feature_cache(Path(smk.output[0]), [Path(inp.captions)], Path(inp.video_feats),
                              Path(inp.text_feats), int(w.frame_tokens), int(w.max_query_len)))


run_step(snakemake, main)
