# onestep: one-step diffusion ablations. Targets only; the rules live in workflow/rules/.
#   snakemake --cores 2 ablate_order      the stage-ordering ablation (table, plot, MLflow runs)
#   snakemake --cores 2 all               every ablation grid in config/ablations/
# Every config/ablations/<file>.yaml with `name: X` is a target X.

configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/tracking.smk"
include: "workflow/rules/teacher.smk"
include: "workflow/rules/curriculum.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/tables.smk"


rule all:
    input:
        [ablation_outputs(name) for name in ABLATIONS],


for _name in ABLATIONS:

    rule:
        name:
            _name
        input:
            ablation_outputs(_name),
