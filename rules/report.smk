rule plots:
    input:
        train_log=rules.train.output.train_log,
        tokenized=rules.tokenize.output.dataset,
        shared_code=SHARED_CODE,
    output:
        curve=report(
            f"{RUN_DIR}/plots/train_curve.png",
            caption="../report/train_curve.rst",
            category="Training",
        ),
        lengths=report(
            f"{RUN_DIR}/plots/token_lengths.png",
            caption="../report/token_lengths.rst",
            category="Data",
        ),
    log:
        f"logs/runs/{RUN}/plots.log",
    benchmark:
        f"benchmarks/runs/{RUN}/plots.tsv"
    conda:
        "../envs/report.yaml"
    params:
        smoothing=cfg("plots", "smoothing"),
        max_len=cfg("tokenize", "max_len"),
    script:
        "../scripts/plots.py"


rule report:
    input:
        counts=rules.prepare.output.counts,
        token_stats=rules.tokenize.output.stats,
        pack_stats=rules.pack.output.stats,
        timing=rules.train.output.timing,
        history=rules.train.output.history,
        samples=rules.generate.output.samples,
        metrics=rules.metrics.output.metrics,
        curve_png=rules.plots.output.curve,
        lengths_png=rules.plots.output.lengths,
        shared_code=SHARED_CODE,
    output:
        report="results/report.html",
    log:
        f"logs/runs/{RUN}/report.log",
    benchmark:
        f"benchmarks/runs/{RUN}/report.tsv"
    conda:
        "../envs/report.yaml"
    params:
        config=literal(config),
    script:
        "../scripts/report.py"
