# Stage 3: decode (decord) and encode (open_clip) per shard of videos, so no decoded frames are kept on
# disk; merge shards into the authors' HDF5 layout; encode every caption's tokens.


rule video_features_shard:
    input:
        videos=f"{DATA}/videos",
        annotations=expand(f"{DATA}/annotations/{{split}}.jsonl", split=SPLITS),
        weights=clip_weights,
    output:
        temp(f"{DATA}/features/shards/video_{{shard}}.h5"),
    params:
        frames=config["frames"],
        clip=config["clip"],
    log:
        "logs/video_features/{shard}.log",
    benchmark:
        "benchmarks/video_features/{shard}.tsv"
    resources:
        gpu=lambda wildcards: 1 if config["clip"]["device"].startswith("cuda") else 0,
    conda:
        "../../envs/features.yaml"
    script:
        "../scripts/video_features_shard.py"


rule merge_video_features:
    input:
        lambda wildcards: expand(f"{DATA}/features/shards/video_{{shard}}.h5", shard=range(n_video_shards())),
    output:
        f"{DATA}/features/video_feats.h5",
    log:
        "logs/merge_video_features.log",
    conda:
        "../../envs/features.yaml"
    script:
        "../scripts/merge_video_features.py"


rule text_features:
    input:
        captions=expand(f"{DATA}/captions/{{split}}.caption.txt", split=SPLITS),
        weights=clip_weights,
    output:
        f"{DATA}/features/text_feats.h5",
    params:
        clip=config["clip"],
    log:
        "logs/text_features.log",
    benchmark:
        "benchmarks/text_features.tsv"
    resources:
        gpu=lambda wildcards: 1 if config["clip"]["device"].startswith("cuda") else 0,
    conda:
        "../../envs/features.yaml"
    script:
        "../scripts/text_features.py"
