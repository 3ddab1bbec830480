# Stage 1: the annotations and the dataset's one video list. The demo corpus is generated (H.264 files
# + TVR-layout jsonl); a benchmark's own files (config data.*) are converted to the same layout.


if DEMO:

    rule generate_corpus:
        output:
            videos=directory(f"{DATA}/videos"),
            annotations=expand(f"{DATA}/annotations/{{split}}.jsonl", split=SPLITS),
            labels=f"{DATA}/annotations/event_labels.jsonl",
        params:
            corpus=config["corpus"],
        log:
            "logs/generate_corpus.log",
        benchmark:
            "benchmarks/generate_corpus.tsv"
        conda:
            "../../envs/videos.yaml"
        script:
            "../scripts/generate_corpus.py"

else:

    rule benchmark_annotations:
        input:
            unpack(benchmark_annotation_files),
        output:
            annotations=expand(f"{DATA}/annotations/{{split}}.jsonl", split=SPLITS),
        params:
            data=config["data"],
            selection=config["eval"]["selection"],
        log:
            "logs/benchmark_annotations.log",
        benchmark:
            "benchmarks/benchmark_annotations.tsv",
        conda:
            "../../envs/videos.yaml"
        script:
            "../scripts/benchmark_annotations.py"


checkpoint video_list:
    input:
        unpack(missing_videos),
        unpack(video_source),  # the videos exist (or are downloaded) before any shard is planned
        annotations=expand(f"{DATA}/annotations/{{split}}.jsonl", split=SPLITS),
    output:
        f"{DATA}/videos.txt",
    log:
        "logs/video_list.log",
    conda:
        "../../envs/videos.yaml"
    script:
        "../scripts/video_list.py"


rule caption_file:
    input:
        unpack(missing_videos),
        annotations=f"{DATA}/annotations/{{split}}.jsonl",
    output:
        captions=f"{DATA}/captions/{{split}}.caption.txt",
        coverage=f"{DATA}/captions/{{split}}.coverage.json",
    log:
        "logs/caption_file/{split}.log",
    benchmark:
        "benchmarks/caption_file/{split}.tsv",
    conda:
        "../../envs/videos.yaml"
    script:
        "../scripts/caption_file.py"
