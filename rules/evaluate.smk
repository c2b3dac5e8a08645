rule generate:
    input:
        test=of_run("prepare", f"{PREPARED}/test.jsonl"),
        model_dir=of_run("base_model", f"{BASE_MODEL}/model"),
        adapter=of_run("train", f"{TRAINED}/adapter"),
        base_samples=of_run("base_samples", f"{BASE_SAMPLES}/base_samples.json"),
        code=code_of("generate.py"),
    output:
        samples=f"{RUN_DIR}/samples.json",
    log:
        "logs/runs/{run}/generate.log",
    benchmark:
        "benchmarks/runs/{run}/generate.tsv"
    conda:
        "../envs/train.yaml"
    threads: EVAL_THREADS
    resources:
        **resources_of(run_value("generate")),
    params:
        **run_params("generate"),
    script:
        "../scripts/generate.py"


# The evaluation's base-model variants, once per key (base model, data, prompt, decoding settings): every run
# that agrees on these shares them, and without the adapter as input the job runs beside training.
rule base_eval:
    input:
        test=upstream("base_eval", "prepare", f"{PREPARED}/test.jsonl"),
        validation=upstream("base_eval", "prepare", f"{PREPARED}/validation.jsonl"),
        train=upstream("base_eval", "prepare", f"{PREPARED}/train.jsonl"),  # the auto budget, contamination
        model_dir=upstream("base_eval", "base_model", f"{BASE_MODEL}/model"),
        code=code_of("base_eval.py"),
    output:
        base_eval=f"{BASE_EVAL}/base_eval.json",
        params_json=f"{BASE_EVAL}/params.json",
    log:
        "logs/base_eval/{key}.log",
    benchmark:
        "benchmarks/base_eval/{key}.tsv"
    conda:
        "../envs/train.yaml"
    threads: BESIDE_THREADS
    resources:
        **resources_of(key_config("base_eval", "metrics")),
    params:
        **keyed_params("base_eval"),
        stage_record=stage_record("base_eval"),
    script:
        "../scripts/base_eval.py"


# generate's base-model variants, once per key (base model, data, prompt, generate's settings): every run that
# agrees on these shares their samples, and without the adapter as input the job runs beside training.
rule base_samples:
    input:
        test=upstream("base_samples", "prepare", f"{PREPARED}/test.jsonl"),
        model_dir=upstream("base_samples", "base_model", f"{BASE_MODEL}/model"),
        code=code_of("base_samples.py"),
    output:
        base_samples=f"{BASE_SAMPLES}/base_samples.json",
        params_json=f"{BASE_SAMPLES}/params.json",
    log:
        "logs/base_samples/{key}.log",
    benchmark:
        "benchmarks/base_samples/{key}.tsv"
    conda:
        "../envs/train.yaml"
    threads: SAMPLES_THREADS
    resources:
        **resources_of(key_config("base_samples", "generate")),
    params:
        **keyed_params("base_samples"),
        stage_record=stage_record("base_samples"),
    script:
        "../scripts/base_samples.py"


rule metrics:
    input:
        test=of_run("prepare", f"{PREPARED}/test.jsonl"),
        validation=of_run("prepare", f"{PREPARED}/validation.jsonl"),
        model_dir=of_run("base_model", f"{BASE_MODEL}/model"),
        adapter=of_run("train", f"{TRAINED}/adapter"),
        base_eval=of_run("base_eval", f"{BASE_EVAL}/base_eval.json"),
        code=code_of("metrics.py"),
    output:
        metrics=report(
            f"{RUN_DIR}/metrics.json",
            caption="../report/metrics.rst",
            category="Evaluation",
            subcategory="{run}",
        ),
    log:
        "logs/runs/{run}/metrics.log",
    benchmark:
        "benchmarks/runs/{run}/metrics.tsv"
    conda:
        "../envs/train.yaml"
    threads: EVAL_THREADS
    resources:
        **resources_of(run_value("metrics")),
    params:
        **run_params("metrics"),
    script:
        "../scripts/metrics.py"
