rule prepare:
    input:
        raw=lambda wildcards: PLAN.config_of_key("prepare", wildcards.key)["data"][
            "raw"
        ],
        code=code_of("prepare.py"),
    output:
        train=f"{PREPARED}/train.jsonl",
        validation=f"{PREPARED}/validation.jsonl",
        test=f"{PREPARED}/test.jsonl",
        counts=f"{PREPARED}/counts.json",
        rejects=f"{PREPARED}/rejects.jsonl",
        params_json=f"{PREPARED}/params.json",
    log:
        "logs/prepare/{key}.log",
    benchmark:
        "benchmarks/prepare/{key}.tsv"
    conda:
        "../envs/data.yaml"
    threads: ALL_BUT_ONE_CORE
    params:
        **keyed_params("prepare"),
        stage_record=stage_record("prepare"),
    script:
        "../scripts/prepare.py"


rule tokenize:
    input:
        train=upstream("tokenize", "prepare", f"{PREPARED}/train.jsonl"),
        validation=upstream("tokenize", "prepare", f"{PREPARED}/validation.jsonl"),
        test=upstream("tokenize", "prepare", f"{PREPARED}/test.jsonl"),
        model_dir=upstream("tokenize", "base_model", f"{BASE_MODEL}/model"),
        code=code_of("tokenize_data.py"),
    output:
        dataset=directory(f"{TOKENIZED}/dataset"),
        stats=f"{TOKENIZED}/stats.json",
        params_json=f"{TOKENIZED}/params.json",
    log:
        "logs/tokenize/{key}.log",
    benchmark:
        "benchmarks/tokenize/{key}.tsv"
    priority: CHAIN_PRIORITY
    conda:
        "../envs/data.yaml"
    threads: MAIN_THREADS
    params:
        **keyed_params("tokenize"),
        stage_record=stage_record("tokenize"),
    script:
        "../scripts/tokenize_data.py"


rule pack:
    input:
        tokenized=upstream("pack", "tokenize", f"{TOKENIZED}/dataset"),
        tokenize_stats=upstream("pack", "tokenize", f"{TOKENIZED}/stats.json"),
        code=code_of("pack.py"),
    output:
        dataset=directory(f"{PACKED}/dataset"),
        stats=f"{PACKED}/stats.json",
        params_json=f"{PACKED}/params.json",
    log:
        "logs/pack/{key}.log",
    benchmark:
        "benchmarks/pack/{key}.tsv"
    priority: CHAIN_PRIORITY
    conda:
        "../envs/data.yaml"
    params:
        **keyed_params("pack"),
        stage_record=stage_record("pack"),
    script:
        "../scripts/pack.py"
