rule export:
    input:
        model_dir=of_run("base_model", f"{BASE_MODEL}/model"),
        adapter=of_run("train", f"{TRAINED}/adapter"),
        shared_code=SHARED_CODE,
    output:
        merged=directory(f"{RUN_DIR}/merged"),
    log:
        "logs/runs/{run}/export.log",
    benchmark:
        "benchmarks/runs/{run}/export.tsv"
    conda:
        "../envs/train.yaml"
    params:
        dtype=run_value("export", "dtype"),
    script:
        "../scripts/export.py"
