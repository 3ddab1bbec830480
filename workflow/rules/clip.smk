# Stage 2: the CLIP model. The demo's tiny open_clip model is pretrained here on generated frame/caption
# pairs (disjoint from the retrieval splits); real runs name open_clip weights in config clip.pretrained.


rule pretrain_clip:
    output:
        weights=f"{DATA}/clip/tiny_clip.pt",
        report=f"{DATA}/clip/tiny_clip.pretrain.json",
    params:
        clip=config["clip"],
    threads: 2  # everything downstream waits for it; torch uses exactly this many
    log:
        "logs/pretrain_clip.log",
    benchmark:
        "benchmarks/pretrain_clip.tsv"
    conda:
        "../../envs/features.yaml"
    script:
        "../scripts/pretrain_clip.py"
