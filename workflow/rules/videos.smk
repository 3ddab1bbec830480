# Stage 1: the videos and their annotations. The demo corpus is generated (H.264 files + TVR-layout jsonl).


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


rule caption_file:
    input:
        f"{DATA}/annotations/{{split}}.jsonl",
    output:
        f"{DATA}/captions/{{split}}.caption.txt",
    log:
        "logs/caption_file/{split}.log",
    conda:
        "../../envs/videos.yaml"
    script:
        "../scripts/caption_file.py"
