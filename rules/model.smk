rule base_model:
    input:
        shared_code=SHARED_CODE,
    output:
        model_dir=directory(BASE_MODEL),
    log:
        "logs/base_model.log",
    benchmark:
        "benchmarks/base_model.tsv"
    conda:
        "../envs/train.yaml"
    params:
        source=cfg("model", "source"),
        trust_remote_code=cfg("model", "trust_remote_code"),
        allow_pickle=cfg("model", "allow_pickle"),
    script:
        "../scripts/base_model.py"
