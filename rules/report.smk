rule plots:
    input:
        train_log=of_run("train", f"{TRAINED}/train_log.csv"),
        tokenized=of_run("tokenize", f"{TOKENIZED}/dataset"),
        code=code_of("plots.py"),
    output:
        curve=report(
            f"{RUN_DIR}/plots/train_curve.png",
            caption="../report/train_curve.rst",
            category="Training",
            subcategory="{run}",
        ),
        lengths=report(
            f"{RUN_DIR}/plots/token_lengths.png",
            caption="../report/token_lengths.rst",
            category="Data",
            subcategory="{run}",
        ),
    log:
        "logs/runs/{run}/plots.log",
    benchmark:
        "benchmarks/runs/{run}/plots.tsv"
    conda:
        "../envs/report.yaml"
    params:
        **run_params("plots"),
    script:
        "../scripts/plots.py"


# The run's whole resolved configuration (config.yaml, --configfile, --config and the run's overrides), kept
# with the run: ask.py and export read a finished run's prompt and sampling settings from it.
rule run_config:
    output:
        config=f"{RUN_DIR}/config.json",
    log:
        "logs/run_config/{run}.log",
    params:
        config=lambda wildcards: PLAN.runs[wildcards.run],
    run:
        write_json(output.config, params.config)
        Path(log[0]).write_text(f"wrote {output.config}\n", encoding="utf-8")


rule run_report:
    input:
        counts=of_run("prepare", f"{PREPARED}/counts.json"),
        token_stats=of_run("tokenize", f"{TOKENIZED}/stats.json"),
        pack_stats=of_run("pack", f"{PACKED}/stats.json"),
        timing=of_run("train", f"{TRAINED}/timing.json"),
        history=of_run("train", f"{TRAINED}/training_history.json"),
        samples=rules.generate.output.samples,
        metrics=rules.metrics.output.metrics,
        curve_png=rules.plots.output.curve,
        lengths_png=rules.plots.output.lengths,
        config=rules.run_config.output.config,
        code=code_of("run_report.py") + TEMPLATES,
    output:
        report=f"{RUN_DIR}/report.html",
        lineage=f"{RUN_DIR}/lineage.json",
    log:
        "logs/runs/{run}/report.log",
    benchmark:
        "benchmarks/runs/{run}/report.tsv"
    conda:
        "../envs/report.yaml"
    params:
        lineage_record=lambda wildcards: PLAN.lineage(wildcards.run),
    script:
        "../scripts/run_report.py"


rule report:
    input:
        report=f"results/runs/{BASELINE}/report.html",
    output:
        report="results/report.html",
    log:
        "logs/report.log",
    conda:
        "../envs/report.yaml"
    params:
        run=BASELINE,
    shell:
        "(cp {input.report} {output.report}.tmp && mv {output.report}.tmp {output.report}) 2> {log}"


rule compare:
    input:
        metrics=expand(rules.metrics.output.metrics, run=RUNS),
        samples=expand(rules.generate.output.samples, run=RUNS),
        timings=every_run("train", f"{TRAINED}/timing.json"),
        train_logs=every_run("train", f"{TRAINED}/train_log.csv"),
        histories=every_run("train", f"{TRAINED}/training_history.json"),
        reports=expand(rules.run_report.output.report, run=RUNS),
        code=code_of("compare.py") + TEMPLATES,
    output:
        page="results/compare.html",
        table="results/compare.json",
        csv="results/compare.csv",
    log:
        "logs/compare.log",
    benchmark:
        "benchmarks/compare.tsv"
    conda:
        "../envs/report.yaml"
    params:
        runs=RUNS,
        baseline=BASELINE,
        lineages=lambda wildcards: {run: PLAN.lineage(run) for run in RUNS},
    script:
        "../scripts/compare.py"
