rule generate:
    input:
        test=of_run("prepare", f"{PREPARED}/test.jsonl"),
        model_dir=of_run("base_model", f"{BASE_MODEL}/model"),
        adapter=of_run("train", f"{TRAINED}/adapter"),
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


rule metrics:
    input:
        test=of_run("prepare", f"{PREPARED}/test.jsonl"),
        validation=of_run("prepare", f"{PREPARED}/validation.jsonl"),
        train=of_run("prepare", f"{PREPARED}/train.jsonl"),  # contamination of the scored references
        model_dir=of_run("base_model", f"{BASE_MODEL}/model"),
        adapter=of_run("train", f"{TRAINED}/adapter"),
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
