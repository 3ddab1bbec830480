# Stage 6: semantic-collapse diagnostics of the CLIP input features (prvr.evaluation.analysis; a trained
# model's come with its evaluation, evaluate.smk), t-SNE figures of a few videos per configuration and
# of the reference (ablation wildcard "clip_input": no model), the paper's side-by-side t-SNE figure (the baseline and
# the full method of main_table, same videos) and the training curves of every trained configuration.


rule collapse_reference:
    input:
        unpack(analysis_inputs),
    output:
        f"{DATA}/collapse/clip_input.json",
    params:
        split=config["analysis"]["split"],
    log:
        "logs/collapse/clip_input.log",
    benchmark:
        "benchmarks/collapse_reference.tsv"
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/collapse.py"


rule tsne:
    input:
        unpack(tsne_inputs),
    output:
        report("results/figures/tsne_{ablation}.png", caption="../report/tsne.rst", category="Figures",
               labels={"configuration": "{ablation}", "figure": "t-SNE"}),
    params:
        split=config["analysis"]["split"],
        tsne_videos=config["analysis"]["tsne_videos"],
        tsne_seed=config["analysis"]["tsne_seed"],
    log:
        "logs/tsne/{ablation}.log",
    benchmark:
        "benchmarks/tsne/{ablation}.tsv"
    resources:
        gpu=gpus_for(config["eval"]["device"]),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/tsne.py"


rule tsne_compare:
    input:
        unpack(tsne_compare_inputs),
    output:
        png=report("results/figures/tsne_compare.png", caption="../report/tsne_compare.rst", category="Figures",
                   labels={"configuration": " vs ".join(COMPARE_ROWS), "figure": "t-SNE, side by side"}),
        pdf="results/figures/tsne_compare.pdf",
    params:
        rows=COMPARE_ROWS,
        split=config["analysis"]["split"],
        tsne_videos=config["analysis"]["tsne_videos"],
        tsne_seed=config["analysis"]["tsne_seed"],
    log:
        "logs/tsne/compare.log",
    benchmark:
        "benchmarks/tsne_compare.tsv"
    resources:
        gpu=gpus_for(config["eval"]["device"]),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/tsne_compare.py"


rule curves:
    input:
        logs=lambda wildcards: run_files(wildcards.ablation, "train_log.jsonl"),
    output:
        png=report("results/figures/curves_{ablation}.png", caption="../report/curves.rst", category="Figures",
                   labels={"configuration": "{ablation}", "figure": "training curves"}),
        pdf="results/figures/curves_{ablation}.pdf",
    params:
        seeds=config["seeds"],
    log:
        "logs/curves/{ablation}.log",
    benchmark:
        "benchmarks/curves/{ablation}.tsv"
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/curves.py"


if COMPARE_ROWS and not RELEASED and SOURCE != "frame_folders":

    rule qualitative:
        input:
            unpack(video_source),
            models=[f"{DATA}/runs/{n}/seed{config['seeds'][0]}/model.pt" for n in COMPARE_ROWS],
            annotations=f"{DATA}/annotations/test.jsonl",
            captions=f"{DATA}/captions/test.caption.txt",
            video_feats=video_store("test"),
            text_feats=text_store("test"),
        output:
            png=report("results/figures/qualitative.png", caption="../report/qualitative.rst", category="Figures",
                       labels={"configuration": " vs ".join(COMPARE_ROWS), "figure": "qualitative"}),
            pdf="results/figures/qualitative.pdf",
            chosen="results/figures/qualitative.json",
        params:
            rows=COMPARE_ROWS,
            video_dir=lambda wildcards, input: input.get("videos", CFG.data.video_dir),
        log:
            "logs/qualitative.log",
        benchmark:
            "benchmarks/qualitative.tsv"
        conda:
            "../../envs/analysis.yaml"
        script:
            "../scripts/qualitative.py"
