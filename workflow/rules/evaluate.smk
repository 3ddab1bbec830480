# Stage 5: per configuration, in one job for all its seeds: each seed's test-split metrics (R@1/5/10/100,
# SumR) of the model selected on eval.selection's split, and its semantic-collapse diagnostics on
# analysis.split. One process per configuration instead of two per seed: on the demo the import of
# torch was most of each such job.


rule evaluate:
    input:
        unpack(test_cache),
        unpack(lambda wildcards: {f"analysis_{k}": v for k, v in analysis_inputs(wildcards).items()}),
        models=lambda wildcards: run_files(wildcards.ablation, "model.pt"),
        captions=f"{DATA}/captions/test.caption.txt",
        coverage=f"{DATA}/captions/test.coverage.json",
        video_feats=video_store("test"),
        text_feats=text_store("test"),
    output:
        metrics=[f"{DATA}/runs/{{ablation}}/seed{seed}/metrics.json" for seed in config["seeds"]],
        collapse=[f"{DATA}/runs/{{ablation}}/seed{seed}/collapse.json" for seed in config["seeds"]],
    params:
        split=config["analysis"]["split"],
    log:
        "logs/evaluate/{ablation}.log",
    benchmark:
        "benchmarks/evaluate/{ablation}.tsv"
    wildcard_constraints:
        ablation=r"[^/]+",
    threads: torch_threads
    resources:
        gpu=gpus_for(config["eval"]["device"]),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/evaluate.py"
