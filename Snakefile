# onestep: one-step diffusion ablations. Targets only; the rules live in workflow/rules/.
#   snakemake --cores 2 ablate_order      the stage-ordering ablation (table, plot, MLflow runs)
#   snakemake --cores 2 all               every ablation grid in config/ablations/
#   snakemake --cores 2 baselines         the seeds' one-step methods vs the curriculum (quality and training cost)
#   snakemake --cores 2 tune_lambda       the Optuna study over lambda (results/optuna/<study>/best.yaml)
# Every config/ablations/<file>.yaml with `name: X` is a target X.

configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/tracking.smk"
include: "workflow/rules/teacher.smk"
include: "workflow/rules/curriculum.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/tune.smk"


rule tune_lambda:
    input:
        rules.tune_summary.output,


rule all:
    input:
        [ablation_outputs(name) for name in ABLATIONS],


for _name in ABLATIONS:

    rule:
        name:
            _name
        input:
            ablation_outputs(_name),
