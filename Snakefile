# QLoRA fine-tuning of a small causal LM to write product descriptions from product titles.
#   snakemake --cores 8 results/report.html                                   (offline demo)
#   snakemake --cores 8 results/report.html --configfile presets/tinyllama.yaml  (the seed notebook's recipe)
#   snakemake --cores 8 results/compare.html --configfile presets/ablation.yaml  (several runs side by side)
# Stages: prepare -> tokenize -> pack -> (base_model) -> train -> generate, metrics -> plots -> report;
# keyed stages write under results/<stage>/<key>/, each run under results/runs/<run>/ (docs/experiments.md).


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/model.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/export.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        "results/report.html",
