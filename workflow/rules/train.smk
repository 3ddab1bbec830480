# Stage 4: train the models of every (configuration, seed); checkpoints every epoch, resumes when rerun.
# config train_jobs: per_seed = a job per seed ({seed} wildcard); per_configuration = one job trains all
# seeds of a configuration in turn (one process, so one Python and torch start-up).


rule train:
    input:
        unpack(train_inputs),
        unpack(teacher_files),
        ablation=ablation_file,
    output:
        model=train_job_files("model.pt"),
        provenance=train_job_files("provenance.json"),
        log=train_job_files("train_log.jsonl"),
    params:
        settings=run_settings,  # model, loss, train, eval.w_clip/w_frame/ks/ties with the ablation applied
    log:
        TRAIN_JOB_LOG,
    benchmark:
        TRAIN_JOB_BENCHMARK
    wildcard_constraints:
        seed=r"\d+",
    threads: torch_threads
    priority: train_priority
    resources:
        gpu=lambda wildcards: gpus_for(row_config(wildcards.ablation).train.device),
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/train.py"
