# Search with a trained model (prvr.search): the test videos indexed with the full method's model, and
# how well search finds each test caption's video and moment (not part of `all`):
#   snakemake --cores 2 results/search_agreement.json
# Only where the DAG has the video files (not released features, not frame folders).

SEARCH_ROW = MSC_ROWS[-1] if MSC_ROWS else TRAINED[-1]  # the full method of the main table

if not RELEASED and SOURCE != "frame_folders":

    rule search_video_list:
        input:
            unpack(video_source),
            annotations=f"{DATA}/annotations/test.jsonl",
        output:
            f"{DATA}/search/test_videos.txt",
        params:
            video_dir=lambda wildcards, input: input.get("videos", CFG.data.video_dir),
        log:
            "logs/search/video_list.log",
        conda:
            "../../envs/videos.yaml"
        script:
            "../scripts/search_video_list.py"

    rule search_index:
        input:
            unpack(lambda wildcards: {"weights": clip_weights(wildcards)} if clip_weights(wildcards) else {}),
            videos=f"{DATA}/search/test_videos.txt",
            model=f"{DATA}/runs/{SEARCH_ROW}/seed{config['seeds'][0]}/model.pt",
        output:
            directory(f"{DATA}/search/index"),
        log:
            "logs/search/index.log",
        benchmark:
            "benchmarks/search/index.tsv"
        conda:
            "../../envs/analysis.yaml"
        script:
            "../scripts/search_index.py"

    rule search_agreement:
        input:
            index=f"{DATA}/search/index",
            annotations=f"{DATA}/annotations/test.jsonl",
        output:
            "results/search_agreement.json",
        log:
            "logs/search/agreement.log",
        conda:
            "../../envs/analysis.yaml"
        script:
            "../scripts/search_agreement.py"
