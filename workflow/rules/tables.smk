# Stage 6: the paper's tables, one row per configuration, mean and std over seeds.


rule ablation_table:
    input:
        unpack(lambda wildcards: {a: run_files(a, "metrics.json") for a in config["ablations"]}),
        ablation_files=[str(ABLATION_DIR / f"{a}.yaml") for a in config["ablations"]],
    output:
        table="results/ablation.csv",
        sources="results/ablation.sources.json",
    params:
        ablations=config["ablations"],
    log:
        "logs/ablation_table.log",
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/ablation_table.py"


rule collapse_table:
    input:
        unpack(lambda wildcards: {a: run_files(a, "collapse.json") for a in config["ablations"]}),
        reference=f"{DATA}/collapse/clip_input.json",
        ablation_files=[str(ABLATION_DIR / f"{a}.yaml") for a in config["ablations"]],
    output:
        table="results/collapse.csv",
        sources="results/collapse.sources.json",
    params:
        ablations=config["ablations"],
    log:
        "logs/collapse_table.log",
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/collapse_table.py"
