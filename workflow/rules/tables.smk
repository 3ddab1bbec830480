# Stage 7: the paper's tables, one row per configuration, mean and std over seeds; CSV + Markdown + LaTeX.


rule ablation_table:
    input:
        unpack(lambda wildcards: {a: run_files(a, "metrics.json") for a in config["ablations"]}),
        ablation_files=[str(ABLATION_DIR / f"{a}.yaml") for a in config["ablations"]],
    output:
        table=report("results/ablation.csv", caption="../report/ablation.rst", category="Tables"),
        sources="results/ablation.sources.json",
        markdown="results/ablation.md",
        latex="results/ablation.tex",
    params:
        ablations=config["ablations"],
    log:
        "logs/ablation_table.log",
    benchmark:
        "benchmarks/ablation_table.tsv",
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
        table=report("results/collapse.csv", caption="../report/collapse.rst", category="Tables"),
        sources="results/collapse.sources.json",
        markdown="results/collapse.md",
        latex="results/collapse.tex",
    params:
        ablations=config["ablations"],
    log:
        "logs/collapse_table.log",
    benchmark:
        "benchmarks/collapse_table.tsv",
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/collapse_table.py"


rule main_table:
    input:
        unpack(main_table_inputs),
    output:
        table=report("results/main_table.csv", caption="../report/main_table.rst", category="Tables"),
        sources="results/main_table.sources.json",
        markdown="results/main_table.md",
        latex="results/main_table.tex",
    params:
        rows=config["main_table"],
        released=list(CHECKPOINTS),
        dataset=config["dataset"],
    log:
        "logs/main_table.log",
    benchmark:
        "benchmarks/main_table.tsv",
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/main_table.py"


rule parameters:
    input:
        model=first_seed_model,
    output:
        f"{DATA}/runs/{{ablation}}/parameters.json",
    log:
        "logs/parameters/{ablation}.log",
    benchmark:
        "benchmarks/parameters/{ablation}.tsv"
    wildcard_constraints:
        ablation=r"[^/]+",
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/parameters.py"


rule benchmark_table:
    input:
        unpack(benchmark_files),
    output:
        table=report("results/benchmarks.csv", caption="../report/benchmarks.rst", category="Benchmarks"),
        markdown="results/benchmarks.md",
        latex="results/benchmarks.tex",
    log:
        "logs/benchmark_table.log",
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/benchmark_table.py"
