# Released checkpoints (config `checkpoints`): each file saved by a release's own code is mapped onto the
# registry model (prvr import-checkpoint) and evaluated on the test split beside the trained rows.


rule import_checkpoint:
    input:
        checkpoint=lambda wildcards: CHECKPOINTS[wildcards.release],
    output:
        f"{DATA}/released/{{release}}/model.pt",
    params:
        base={key: config[key] for key in ("dataset", "data", "model", "eval")},  # what their file does not say
    log:
        "logs/import_checkpoint/{release}.log",
    wildcard_constraints:
        release="|".join(CHECKPOINT_FORMATS),
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/import_checkpoint.py"


rule evaluate_checkpoint:
    input:
        model=f"{DATA}/released/{{release}}/model.pt",
        captions=f"{DATA}/captions/test.caption.txt",
        coverage=f"{DATA}/captions/test.coverage.json",
        video_feats=video_store("test"),
        text_feats=text_store("test"),
    output:
        f"{DATA}/released/{{release}}/metrics.json",
    log:
        "logs/evaluate_checkpoint/{release}.log",
    wildcard_constraints:
        release="|".join(CHECKPOINT_FORMATS),
    resources:
        gpu=gpus_for(config["eval"]["device"]),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/evaluate_checkpoint.py"
