# Paper tables and figures, from the stored metrics.json files (and the runs' logs) alone: no training.
rule table:
    input:
        runs=lambda w: table_runs(w.ablation),
        teachers=TEACHER_ROWS,
        reference=f"{ROOT}/reference.json",
        configs=lambda w: [*table_configs(w.ablation), job_config("teacher_eval"), job_config("reference")],
        parent=f"{OUT}/mlflow/{{ablation}}.parent.json",
        spec=lambda w: spec_file(w.ablation),
    output:
        md=f"{TABLES}/{{ablation}}.md",
        tex=f"{TABLES}/{{ablation}}.tex",
        csv=f"{TABLES}/{{ablation}}.csv",
        plot=f"{PLOTS}/{{ablation}}.png",
        curves=f"{PLOTS}/{{ablation}}_curves.png",
        samples=f"{PLOTS}/{{ablation}}_samples.png",
    log:
        f"{LOGS}/table/{{ablation}}.log",
    params:
        prefix=f"{TABLES}/{{ablation}}",
    localrule: True
    shell:
        "{ONESTEP} tables --threads {threads} --config {TRACKING_CONFIG} --ablation {wildcards.ablation} --runs {input.runs}"
        " --teachers {input.teachers} --reference {input.reference} --spec {input.spec}"
        " --out-prefix {params.prefix} --plot {output.plot} --parent {input.parent} --log {log}"


# The main table: baseline and best point of every ablation that applies to the dataset.
rule main_table:
    input:
        [f"{TABLES}/{name}.csv" for name in APPLICABLE],
    output:
        md=f"{TABLES}/main.md",
        tex=f"{TABLES}/main.tex",
        csv=f"{TABLES}/main.csv",
        plot=f"{PLOTS}/main.png",
    log:
        f"{LOGS}/table/main.log",
    params:
        prefix=f"{TABLES}/main",
    localrule: True
    shell:
        "{ONESTEP} main-table --tables {input} --out-prefix {params.prefix} --plot {output.plot} --log {log}"
