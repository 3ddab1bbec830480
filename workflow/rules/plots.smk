# Stage 6: semantic-collapse diagnostics of every trained model and of the CLIP input features
# (prvr.evaluation.analysis), and t-SNE figures of a few videos per configuration.


rule collapse:
    input:
        unpack(analysis_inputs),
        model=f"{DATA}/runs/{{ablation}}/seed{{seed}}/model.pt",
    output:
        f"{DATA}/runs/{{ablation}}/seed{{seed}}/collapse.json",
    params:
        split=config["analysis"]["split"],
    log:
        "logs/collapse/{ablation}/seed{seed}.log",
    wildcard_constraints:
        seed=r"\d+",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/collapse.py"


rule collapse_reference:
    input:
        unpack(analysis_inputs),
    output:
        f"{DATA}/collapse/clip_input.json",
    params:
        split=config["analysis"]["split"],
    log:
        "logs/collapse/clip_input.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/collapse.py"


rule tsne:
    input:
        unpack(analysis_inputs),
        model=lambda wildcards: f"{DATA}/runs/{wildcards.ablation}/seed{config['seeds'][0]}/model.pt",
    output:
        "results/figures/tsne_{ablation}.png",
    params:
        split=config["analysis"]["split"],
    log:
        "logs/tsne/{ablation}.log",
    wildcard_constraints:
        ablation=r"(?!clip_input$)[^/]+",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/tsne.py"


rule tsne_reference:
    input:
        unpack(analysis_inputs),
    output:
        "results/figures/tsne_clip_input.png",
    params:
        split=config["analysis"]["split"],
    log:
        "logs/tsne/clip_input.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/tsne.py"
