# Where a benchmark's videos come from (config data.videos): downloads are local rules (the login node
# on SLURM); a user directory of videos or of frame folders needs no rule, nor do released features
# (released_features, released_bigfile: imported by features.smk, never decoded).


rule download_archive:
    output:
        done=f"{DATA}/downloads/archive.json",
    params:
        url=config["data"]["archive_url"],
        sha256=config["data"]["archive_sha256"],
        video_dir=config["data"]["video_dir"],
    log:
        "logs/download_archive.log",
    conda:
        "../../envs/videos.yaml"
    localrule: True
    script:
        "../scripts/download_archive.py"


rule download_youtube:  # one split a job (the splits share no video)
    input:
        annotations=f"{DATA}/annotations/{{split}}.jsonl",
    output:
        done=f"{DATA}/downloads/youtube/{{split}}.json",
        missing=f"{DATA}/missing_videos/{{split}}.tsv",
    params:
        video_dir=config["data"]["video_dir"],
    log:
        "logs/download_youtube/{split}.log",
    wildcard_constraints:
        split="|".join(SPLITS),
    conda:
        "../../envs/videos.yaml"
    localrule: True
    script:
        "../scripts/download_youtube.py"
