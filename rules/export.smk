rule export:
    input:
        model_dir=BASE_MODEL,
        adapter=rules.train.output.adapter,
        shared_code=SHARED_CODE,
    output:
        merged=directory(f"{RUN_DIR}/merged"),
    log:
        f"logs/runs/{RUN}/export.log",
    benchmark:
        f"benchmarks/runs/{RUN}/export.tsv"
    conda:
        "../envs/train.yaml"
    params:
        dtype=cfg("export", "dtype"),
    script:
        "../scripts/export.py"
