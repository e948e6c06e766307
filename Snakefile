# onestep: one-step diffusion ablations. Targets only; the rules live in workflow/rules/.
#   snakemake --cores 2 ablate_order      the stage-ordering ablation (table, plot, MLflow runs)
#   snakemake --cores 2 ablate_all        every ablation that applies to the dataset, and the main table
#   snakemake --cores 2 tables            rebuild the tables of finished ablations from their metrics.json
#   (ablate_loss needs images: snakemake --cores 2 ablate_loss --configfile config/digits.yaml)
#   snakemake --cores 2 baselines         the seeds' one-step methods vs the curriculum (quality and training cost)
#   snakemake --cores 2 tune_lambda       the Optuna study over lambda (results/optuna/<study>/best.yaml)
#   snakemake --cores 2 tune_baselines    equal-effort tuning: a study per baseline method (its search_space), the
#                                         tuned-values file results/<data>/tuned_baselines.yaml and its table
#   snakemake --cores 2 baselines_tuned   the baselines with default and with tuned values side by side
#   snakemake --cores 2 paper             every table and figure of this tier under results/paper/<tier>/ (index.md);
#                                         then snakemake paper --report report.html for a browsable bundle
# Every config/ablations/<file>.yaml with `name: X` is a target X.

configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/configs.smk"
include: "workflow/rules/tracking.smk"
include: "workflow/rules/teacher.smk"
include: "workflow/rules/curriculum.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/tune.smk"
include: "workflow/rules/paper.smk"


rule tune_lambda:
    input:
        study_outputs(STUDY),


# equal-effort tuning: one study per method of tune_baselines.grid, then the tuned-values file and its table
rule tune_baselines:
    input:
        lambda w: baseline_studies(),


rule ablate_all:
    input:
        [ablation_outputs(name) for name in APPLICABLE],
        rules.main_table.output,


rule paper:
    input:
        rules.paper_index.output,


rule all:
    input:
        rules.ablate_all.input,


rule tables:
    input:
        stored_tables,


for _name, _ab in ABLATIONS.items():

    rule:
        name:
            _name
        input:
            (lambda w, n=_name: ablation_outputs(n)) if _ab.skipped else ablation_outputs(_name),
