# Stage 5: test-split metrics (R@1/5/10/100, SumR) of the model selected on eval.selection's split.


rule evaluate:
    input:
        unpack(run_cache),
        model=f"{DATA}/runs/{{ablation}}/seed{{seed}}/model.pt",
        captions=f"{DATA}/captions/test.caption.txt",
        coverage=f"{DATA}/captions/test.coverage.json",
        video_feats=f"{DATA}/features/video_feats.h5",
        text_feats=f"{DATA}/features/text_feats.h5",
    output:
        f"{DATA}/runs/{{ablation}}/seed{{seed}}/metrics.json",
    log:
        "logs/evaluate/{ablation}/seed{seed}.log",
    wildcard_constraints:
        seed=r"\d+",
    resources:
        gpu=gpus_for(config["eval"]["device"]),
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/evaluate.py"
