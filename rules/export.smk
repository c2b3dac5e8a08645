rule export:
    input:
        model_dir=of_run("base_model", f"{BASE_MODEL}/model"),
        adapter=of_run("train", f"{TRAINED}/adapter"),
        config=f"{RUN_DIR}/config.json",  # rule run_config
        code=code_of("export.py"),
    output:
        merged=directory(f"{RUN_DIR}/merged"),
    log:
        "logs/runs/{run}/export.log",
    benchmark:
        "benchmarks/runs/{run}/export.tsv"
    conda:
        "../envs/train.yaml"
    params:
        **run_params("export"),
    script:
        "../scripts/export.py"
