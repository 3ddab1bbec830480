# Stage 3: decode (decord or PyAV) and encode (open_clip) a split's videos a shard at a time, so no
# decoded frames are kept on disk; merge the shards into the split's store in the authors' HDF5 layout;
# encode each split's captions into that split's own store. With data.videos: released_features, the
# authors' HDF5 files are validated and imported instead, a split a job; with released_bigfile, MS-SL's
# BigFile folder and RoBERTa caption HDF5 (the I3D-feature baselines). Every store and cache is a
# split's own, so an edit of the test captions re-encodes and re-evaluates and never retrains.

if not RELEASED:

    rule video_features_shard:
        input:
            unpack(video_source),
            video_list=f"{DATA}/video_lists/{{split}}.txt",
            weights=clip_weights,
        output:
            temp(f"{DATA}/features/shards/{{split}}_{{shard}}.h5"),
        params:
            frames=config["frames"],
            clip=config["clip"],
            video_dir=lambda wildcards, input: input.get("videos", CFG.data.video_dir),
            folder_fps=config["data"]["folder_fps"],
        log:
            "logs/video_features/{split}_{shard}.log",
        benchmark:
            "benchmarks/video_features/{split}_{shard}.tsv"
        wildcard_constraints:
            split="|".join(SPLITS),
            shard=r"\d+",
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
            f"{DATA}/features/video/{{split}}.h5",
        params:
            sources=video_sources,
        log:
            "logs/merge_video_features/{split}.log",
        benchmark:
            "benchmarks/merge_video_features/{split}.tsv",
        wildcard_constraints:
            split="|".join(SPLITS),
        conda:
            "../../envs/features.yaml"
        script:
            "../scripts/merge_video_features.py"


    rule text_features:
        input:
            captions=f"{DATA}/captions/{{split}}.caption.txt",
            weights=clip_weights,
        output:
            f"{DATA}/features/text/{{split}}.h5",
        params:
            clip=config["clip"],
        log:
            "logs/text_features/{split}.log",
        benchmark:
            "benchmarks/text_features/{split}.tsv"
        wildcard_constraints:
            split="|".join(SPLITS),
        resources:
            gpu=gpus_for(config["clip"]["device"]),
        conda:
            "../../envs/features.yaml"
        script:
            "../scripts/text_features.py"

elif SOURCE == "released_bigfile":

    rule import_bigfile:  # one split a job (the splits share no video)
        input:
            captions=f"{DATA}/captions/{{split}}.caption.txt",
            bigfile_dir=config["data"]["released_bigfile_dir"],
            text_h5=config["data"]["released_text_h5"],
        output:
            video_feats=f"{DATA}/features/video/{{split}}.h5",
            text_feats=f"{DATA}/features/text/{{split}}.h5",
        log:
            "logs/import_bigfile/{split}.log",
        benchmark:
            "benchmarks/import_bigfile/{split}.tsv",
        wildcard_constraints:
            split="|".join(SPLITS),
        conda:
            "../../envs/features.yaml"
        script:
            "../scripts/import_bigfile.py"

else:

    rule import_released:  # one split a job (the splits share no video)
        input:
            captions=f"{DATA}/captions/{{split}}.caption.txt",
            video_h5=config["data"]["released_video_h5"],
            text_h5=config["data"]["released_text_h5"],
        output:
            video_feats=f"{DATA}/features/video/{{split}}.h5",
            text_feats=f"{DATA}/features/text/{{split}}.h5",
        log:
            "logs/import_released/{split}.log",
        benchmark:
            "benchmarks/import_released/{split}.tsv",
        wildcard_constraints:
            split="|".join(SPLITS),
        conda:
            "../../envs/features.yaml"
        script:
            "../scripts/import_released.py"


rule feature_cache:  # one split a job: that split's videos and captions
    input:
        captions=f"{DATA}/captions/{{split}}.caption.txt",
        video_feats=lambda wildcards: video_store(wildcards.split),
        text_feats=lambda wildcards: text_store(wildcards.split),
    output:
        directory(f"{DATA}/cache/ft{{frame_tokens}}_q{{max_query_len}}/{{split}}"),
    log:
        "logs/feature_cache/ft{frame_tokens}_q{max_query_len}/{split}.log",
    benchmark:
        "benchmarks/feature_cache/ft{frame_tokens}_q{max_query_len}/{split}.tsv"
    wildcard_constraints:
        frame_tokens=r"\d+",
        max_query_len=r"\d+",
        split="|".join(SPLITS),
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
