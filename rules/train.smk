rule train:
    input:
        packed=rules.pack.output.dataset,
        model_dir=BASE_MODEL,
        shared_code=SHARED_CODE,
    output:
        adapter=directory(f"{RUN_DIR}/adapter"),
        train_log=f"{RUN_DIR}/train_log.csv",
        history=f"{RUN_DIR}/training_history.json",
        timing=f"{RUN_DIR}/timing.json",
    log:
        f"logs/runs/{RUN}/train.log",
    benchmark:
        f"benchmarks/runs/{RUN}/train.tsv"
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        **resources_of("train"),
    params:
        **{key: value for key, value in cfg("train").items() if key != "resources"},
        # Checkpoints live outside the declared outputs so that a rerun after a kill can resume from them.
        checkpoint_dir=f"{RUN_DIR}/checkpoints",
        max_len=cfg("tokenize", "max_len"),
    script:
        "../scripts/train.py"
