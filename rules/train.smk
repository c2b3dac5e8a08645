rule train:
    input:
        packed=upstream("train", "pack", f"{PACKED}/dataset"),
        model_dir=upstream("train", "base_model", f"{BASE_MODEL}/model"),
        code=code_of("train.py"),
    output:
        adapter=directory(f"{TRAINED}/adapter"),
        train_log=f"{TRAINED}/train_log.csv",
        history=f"{TRAINED}/training_history.json",
        timing=f"{TRAINED}/timing.json",
        params_json=f"{TRAINED}/params.json",
    log:
        "logs/train/{key}.log",
    benchmark:
        "benchmarks/train/{key}.tsv"
    priority: CHAIN_PRIORITY
    conda:
        "../envs/train.yaml"
    threads: MAIN_THREADS
    resources:
        **resources_of(key_config("train", "train")),
    params:
        **keyed_params("train"),
        # Checkpoints live outside the declared outputs so that a rerun after a kill can resume from them.
        checkpoint_dir=f"{TRAINED}/checkpoints",
        stage_record=stage_record("train"),
    script:
        "../scripts/train.py"
