rule generate:
    input:
        test=rules.prepare.output.test,
        model_dir=BASE_MODEL,
        adapter=rules.train.output.adapter,
        shared_code=SHARED_CODE,
    output:
        samples=f"{RUN_DIR}/samples.json",
    log:
        f"logs/runs/{RUN}/generate.log",
    benchmark:
        f"benchmarks/runs/{RUN}/generate.tsv"
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        **resources_of("generate"),
    params:
        **{key: value for key, value in cfg("generate").items() if key != "resources"},
        instruction_template=literal(cfg("prompt", "instruction")),
        base_prompt_template=literal(cfg("prompt", "base_plain")),
        stop_strings=cfg("prompt", "stop_strings"),
        quantization=cfg("train", "quantization"),
    script:
        "../scripts/generate.py"


rule metrics:
    input:
        test=rules.prepare.output.test,
        validation=rules.prepare.output.validation,
        model_dir=BASE_MODEL,
        adapter=rules.train.output.adapter,
        shared_code=SHARED_CODE,
    output:
        metrics=report(
            f"{RUN_DIR}/metrics.json",
            caption="../report/metrics.rst",
            category="Evaluation",
        ),
    log:
        f"logs/runs/{RUN}/metrics.log",
    benchmark:
        f"benchmarks/runs/{RUN}/metrics.tsv"
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        **resources_of("metrics"),
    params:
        **{key: value for key, value in cfg("metrics").items() if key != "resources"},
        instruction_template=literal(cfg("prompt", "instruction")),
        response_template=literal(cfg("prompt", "response")),
        base_prompt_template=literal(cfg("prompt", "base_plain")),
        stop_strings=cfg("prompt", "stop_strings"),
        quantization=cfg("train", "quantization"),
    script:
        "../scripts/metrics.py"
