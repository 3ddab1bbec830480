"""Snakemake step: results/main_table.csv (+ .md, .tex, .sources.json): the rows trained here (config
main_table, every seed) beside the reported numbers of config/reported.yaml, with the cost columns."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))  # prvr importable without installing it (conda envs)
from prvr.pipeline import run_step  # noqa: E402

from prvr.config import load_yaml  # noqa: E402
from prvr.provenance import sha256_file  # noqa: E402
from prvr.reporting.main_table import (load_reported, main_table, read_costs, read_parameters,  # noqa: E402
                                       write_main_table)
from prvr.reporting.renderings import render_table  # noqa: E402


def main(smk, cfg):
    inp, rows = smk.input, smk.params.rows
    trained = {name: list(inp[f"metrics_{name}"]) for name in rows}
    ablations = {name: inp[f"ablation_{name}"] for name in rows}
    costs_path = inp.costs if "costs" in inp.keys() else None
    reported = load_reported(inp.reported)
    frame = main_table(
        trained, reported, smk.params.dataset,
        params={name: read_parameters(inp[f"params_{name}"]) for name in rows},
        costs=read_costs(costs_path) if costs_path else None,
        ablation_sha256={name: sha256_file(path) for name, path in ablations.items()},
        notes={name: str(load_yaml(path).get("description", "")) for name, path in ablations.items()},
        released={name: inp[f"released_{name}"] for name in smk.params.released})
    sources = {"trained": trained, "parameters": {name: inp[f"params_{name}"] for name in rows},
               "released": {name: inp[f"released_{name}"] for name in smk.params.released},
               "reported": str(inp.reported), "costs": str(costs_path) if costs_path else None,
               "reported_sources": {s.key: s.reference for s in reported.sources.values()}}
    write_main_table(frame, smk.output.table, sources)
    render_table(smk.output.table, caption="Main table: trained here (mean over seeds) and reported numbers",
                 mean_std=True)
    print(frame[["dataset", "method", "kind", "SumR"]].to_string(index=False))


run_step(snakemake, main)
