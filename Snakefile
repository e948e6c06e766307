# onestep: one-step diffusion ablations. Targets only; the rules live in workflow/rules/.
#   snakemake --cores 2 ablate_order      the stage-ordering ablation (table, plot, MLflow runs)
#   snakemake --cores 2 ablate_all        every ablation that applies to the dataset, and the main table
#   snakemake --cores 2 tables            rebuild the tables of finished ablations from their metrics.json
#   (ablate_loss needs images: snakemake --cores 2 ablate_loss --configfile config/digits.yaml)
#   snakemake --cores 2 baselines         the seeds' one-step methods vs the curriculum (quality and training cost)
#   snakemake --cores 2 baselines_budget  every method at 1k..16k optimiser steps: quality against budget (table, figure)
#   snakemake --cores 2 baselines_compute the methods at the curriculum's counted compute (reads baselines_budget's runs)
#   snakemake --cores 2 ablate_init       students from scratch vs from the teacher (generator students)
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
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/tune.smk"
include: "workflow/rules/paper.smk"


rule tune_lambda:
    """The Optuna study over lambda: best.yaml, its trials table and figures."""
    input:
        P.study_outputs(P.study),


rule tune_baselines:
    """Equal-effort tuning: one study per method of tune_baselines.grid, the tuned-values file and its table."""
    input:
        P.baseline_targets,


rule ablate_all:
    """Every ablation that applies to the dataset, and the main table."""
    input:
        [P.ablation_outputs(name) for name in P.applicable],
        rules.main_table.output,


rule paper:
    """Every table and figure of this tier under results/paper/<tier>/, with index.md."""
    input:
        rules.paper_index.output,


rule all:
    """The same as ablate_all."""
    input:
        rules.ablate_all.input,


rule tables:
    """Rebuild the tables of the finished ablations from their metrics.json (and the main table once all are)."""
    input:
        P.stored_tables,


for _name in P.ablations:

    rule:
        """An ablation of config/ablations/ (its `name:`): its table, plot and every run's metrics."""
        name:
            _name
        input:
            P.ablation_target(_name),


include: "workflow/rules/targets.smk"
