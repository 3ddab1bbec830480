"""Snakemake step: the qualitative figure, the baseline's and the full method's top videos for a few
test queries chosen by the rule in its caption (prvr.reporting.qualitative_data)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.io import write_json  # noqa: E402
from prvr.reporting.figures import require_analysis_extra  # noqa: E402
from prvr.reporting.qualitative_data import qualitative_run  # noqa: E402


def main(smk, cfg):
    require_analysis_extra()
    inp = smk.input
    chosen = qualitative_run(dict(zip(smk.params.rows, map(Path, inp.models))), cfg, Path(inp.annotations),
                             Path(inp.captions), Path(inp.video_feats), Path(inp.text_feats),
                             Path(smk.params.video_dir), Path(smk.output.png))
    write_json(smk.output.chosen, chosen)
    print(chosen)


run_step(snakemake, main)
