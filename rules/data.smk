rule prepare:
    input:
        raw=cfg("data", "raw"),
        shared_code=SHARED_CODE,
    output:
        train=f"{DATA}/prepared/train.jsonl",
        validation=f"{DATA}/prepared/validation.jsonl",
        test=f"{DATA}/prepared/test.jsonl",
        counts=f"{DATA}/prepared/counts.json",
        rejects=f"{DATA}/prepared/rejects.jsonl",
    log:
        "logs/prepare.log",
    benchmark:
        "benchmarks/prepare.tsv"
    conda:
        "../envs/data.yaml"
    params:
        duplicate_titles=cfg("data", "duplicate_titles"),
        sample_size=cfg("data", "sample_size"),
        seed=cfg("data", "seed"),
        validation_fraction=cfg("data", "validation_fraction"),
        test_fraction=cfg("data", "test_fraction"),
        instruction_template=literal(cfg("prompt", "instruction")),
        response_template=literal(cfg("prompt", "response")),
    script:
        "../scripts/prepare.py"


rule tokenize:
    input:
        train=rules.prepare.output.train,
        validation=rules.prepare.output.validation,
        test=rules.prepare.output.test,
        model_dir=BASE_MODEL,
        shared_code=SHARED_CODE,
    output:
        dataset=directory(f"{DATA}/tokenized"),
        stats=f"{DATA}/tokenize_stats.json",
    log:
        "logs/tokenize.log",
    benchmark:
        "benchmarks/tokenize.tsv"
    conda:
        "../envs/data.yaml"
    threads: cfg("tokenize", "threads")
    params:
        max_len=cfg("tokenize", "max_len"),
        completion_only=cfg("tokenize", "completion_only"),
        overlong=cfg("tokenize", "overlong"),
    script:
        "../scripts/tokenize_data.py"


rule pack:
    input:
        tokenized=rules.tokenize.output.dataset,
        tokenize_stats=rules.tokenize.output.stats,
        shared_code=SHARED_CODE,
    output:
        dataset=directory(f"{DATA}/packed"),
        stats=f"{DATA}/pack_stats.json",
    log:
        "logs/pack.log",
    benchmark:
        "benchmarks/pack.tsv"
    conda:
        "../envs/data.yaml"
    params:
        mode=cfg("pack", "mode"),
        max_len=cfg("tokenize", "max_len"),
    script:
        "../scripts/pack.py"
