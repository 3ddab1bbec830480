# Stage 1: the annotations, caption files and video lists, a split each. The demo corpus is generated
# (H.264 files + TVR-layout jsonl); a benchmark's own files (config data.*) are converted to the same
# layout. Nothing of one split is made from another's files (other than the disjointness check), so an
# edit of the test captions never reaches training.


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

    rule benchmark_annotations:  # one split a job: an edit of the test file reconverts test alone
        input:
            unpack(benchmark_annotation_files),
        output:
            annotations=f"{DATA}/annotations/{{split}}.jsonl",
        params:
            settings=benchmark_split_settings,
        log:
            "logs/benchmark_annotations/{split}.log",
        benchmark:
            "benchmarks/benchmark_annotations/{split}.tsv",
        wildcard_constraints:
            split="|".join(SPLITS),
        conda:
            "../../envs/videos.yaml"
        script:
            "../scripts/benchmark_annotations.py"


checkpoint video_list:  # one split a job; the others' annotations are read (ancient) to check it shares no video
    input:
        unpack(missing_videos),
        unpack(video_source),  # the videos exist (or are downloaded) before any shard is planned
        annotations=f"{DATA}/annotations/{{split}}.jsonl",
        others=lambda wildcards: [ancient(f"{DATA}/annotations/{s}.jsonl") for s in SPLITS if s != wildcards.split],
    output:
        f"{DATA}/video_lists/{{split}}.txt",
    log:
        "logs/video_list/{split}.log",
    wildcard_constraints:
        split="|".join(SPLITS),
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
