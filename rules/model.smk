rule base_model:
    input:
        code=code_of("base_model.py"),
    output:
        model_dir=directory(f"{BASE_MODEL}/model"),
        params_json=f"{BASE_MODEL}/params.json",
    log:
        "logs/base_model/{key}.log",
    benchmark:
        "benchmarks/base_model/{key}.tsv"
    conda:
        "../envs/train.yaml"
    params:
        **keyed_params("base_model"),
        stage_record=stage_record("base_model"),
    script:
        "../scripts/base_model.py"
