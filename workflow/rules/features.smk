# Stage 3: decode (decord or PyAV) and encode (open_clip) per shard of the dataset's video list, so no
# decoded frames are kept on disk; merge shards into the authors' HDF5 layout; encode every caption's
# tokens. With data.videos: released_features, the authors' HDF5 files are validated and imported instead;
# with released_bigfile, MS-SL's BigFile folder and RoBERTa caption HDF5 (the I3D-feature baselines).

if not RELEASED:

    rule video_features_shard:
        input:
            unpack(video_source),
            video_list=f"{DATA}/videos.txt",
            weights=clip_weights,
        output:
            temp(f"{DATA}/features/shards/video_{{shard}}.h5"),
        params:
            frames=config["frames"],
            clip=config["clip"],
            video_dir=lambda wildcards, input: input.get("videos", CFG.data.video_dir),
            folder_fps=config["data"]["folder_fps"],
        log:
            "logs/video_features/{shard}.log",
        benchmark:
            "benchmarks/video_features/{shard}.tsv"
        resources:
            gpu=gpus_for(config["clip"]["device"]),
        conda:
            "../../envs/features.yaml"
        script:
            "../scripts/video_features_shard.py"


    rule merge_video_features:
        input:
            video_shards,
        output:
            f"{DATA}/features/video_feats.h5",
        params:
            sources=video_sources,
        log:
            "logs/merge_video_features.log",
        benchmark:
            "benchmarks/merge_video_features.tsv",
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
            gpu=gpus_for(config["clip"]["device"]),
        conda:
            "../../envs/features.yaml"
        script:
            "../scripts/text_features.py"

elif SOURCE == "released_bigfile":

    rule import_bigfile:
        input:
            captions=expand(f"{DATA}/captions/{{split}}.caption.txt", split=SPLITS),
            bigfile_dir=config["data"]["released_bigfile_dir"],
            text_h5=config["data"]["released_text_h5"],
        output:
            video_feats=f"{DATA}/features/video_feats.h5",
            text_feats=f"{DATA}/features/text_feats.h5",
        log:
            "logs/import_bigfile.log",
        benchmark:
            "benchmarks/import_bigfile.tsv",
        conda:
            "../../envs/features.yaml"
        script:
            "../scripts/import_bigfile.py"

else:

    rule import_released:
        input:
            captions=expand(f"{DATA}/captions/{{split}}.caption.txt", split=SPLITS),
            video_h5=config["data"]["released_video_h5"],
            text_h5=config["data"]["released_text_h5"],
        output:
            video_feats=f"{DATA}/features/video_feats.h5",
            text_feats=f"{DATA}/features/text_feats.h5",
        log:
            "logs/import_released.log",
        benchmark:
            "benchmarks/import_released.tsv",
        conda:
            "../../envs/features.yaml"
        script:
            "../scripts/import_released.py"


rule feature_cache:
    input:
        captions=cache_captions,
        video_feats=f"{DATA}/features/video_feats.h5",
        text_feats=f"{DATA}/features/text_feats.h5",
    output:
        directory(f"{DATA}/cache/ft{{frame_tokens}}_q{{max_query_len}}"),
    log:
        "logs/feature_cache/ft{frame_tokens}_q{max_query_len}.log",
    benchmark:
        "benchmarks/feature_cache/ft{frame_tokens}_q{max_query_len}.tsv"
    wildcard_constraints:
        frame_tokens=r"\d+",
        max_query_len=r"\d+",
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/feature_cache.py"


if config["data"]["teacher_video_h5"]:

    rule import_teacher:
        input:
            captions=f"{DATA}/captions/train.caption.txt",
            video_h5=config["data"]["teacher_video_h5"],
            text_h5=config["data"]["teacher_text_h5"],
        output:
            video=f"{DATA}/features/teacher_video.h5",
            text=f"{DATA}/features/teacher_text.h5",
        log:
            "logs/import_teacher.log",
        benchmark:
            "benchmarks/import_teacher.tsv",
        conda:
            "../../envs/features.yaml"
        script:
            "../scripts/import_teacher.py"
