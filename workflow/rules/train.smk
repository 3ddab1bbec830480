# Stage 4: train one model per (configuration, seed); checkpoints every epoch, resumes when rerun.


rule train:
    input:
        unpack(train_inputs),
        unpack(teacher_files),
        ablation=ablation_file,
    output:
        model=f"{DATA}/runs/{{ablation}}/seed{{seed}}/model.pt",
        provenance=f"{DATA}/runs/{{ablation}}/seed{{seed}}/provenance.json",
        log=f"{DATA}/runs/{{ablation}}/seed{{seed}}/train_log.jsonl",
    params:
        settings=run_settings,  # model, loss, train, eval.w_clip/w_frame/ks/ties with the ablation applied
    log:
        "logs/train/{ablation}/seed{seed}.log",
    benchmark:
        "benchmarks/train/{ablation}/seed{seed}.tsv"
    wildcard_constraints:
        seed=r"\d+",
    threads: torch_threads
    resources:
        gpu=lambda wildcards: gpus_for(row_config(wildcards.ablation).train.device),
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/train.py"
