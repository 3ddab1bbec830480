# Stage 4: train one model per (configuration, seed); checkpoints every epoch, resumes when rerun.


rule train:
    input:
        ablation=ablation_file,
        train_captions=f"{DATA}/captions/train.caption.txt",
        val_captions=f"{DATA}/captions/val.caption.txt",
        video_feats=f"{DATA}/features/video_feats.h5",
        text_feats=f"{DATA}/features/text_feats.h5",
    output:
        model=f"{DATA}/runs/{{ablation}}/seed{{seed}}/model.pt",
        provenance=f"{DATA}/runs/{{ablation}}/seed{{seed}}/provenance.json",
        log=f"{DATA}/runs/{{ablation}}/seed{{seed}}/train_log.jsonl",
    params:
        model=config["model"],
        loss=config["loss"],
        train=config["train"],
    log:
        "logs/train/{ablation}/seed{seed}.log",
    benchmark:
        "benchmarks/train/{ablation}/seed{seed}.tsv"
    wildcard_constraints:
        seed=r"\d+",
    resources:
        gpu=lambda wildcards: 1 if config["train"]["device"].startswith("cuda") else 0,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/train.py"
