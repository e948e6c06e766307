# Paper tables and figures, from the stored metrics.json files (and the runs' logs) alone: no training.


rule table:
    """An ablation's table (md, tex, csv) and figures, from its runs' metrics.json and the teacher rows."""
    input:
        runs=P.table_runs,
        teachers=P.teacher_rows,
        reference=f"{ROOT}/reference.json",
        configs=P.table_configs,
        parent=f"{OUT}/mlflow/{{ablation}}.parent.json",
        spec=P.spec_file,
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
        prefix=wf.prefix("md", ".md"),
        tracking=P.tracking_config,
    localrule: True
    shell:
        "{ONESTEP} tables --threads {threads} --config {params.tracking} --ablation {wildcards.ablation} --runs {input.runs}"
        " --teachers {input.teachers} --reference {input.reference} --spec {input.spec}"
        " --out-prefix {params.prefix} --plot {output.plot} --parent {input.parent} --log {log}"


rule main_table:
    """The main table: the baseline and best point of every ablation that applies to the dataset."""
    input:
        P.main_inputs(),
    output:
        md=f"{TABLES}/main.md",
        tex=f"{TABLES}/main.tex",
        csv=f"{TABLES}/main.csv",
        plot=f"{PLOTS}/main.png",
    log:
        f"{LOGS}/table/main.log",
    params:
        prefix=wf.prefix("md", ".md"),
    localrule: True
    shell:
        "{ONESTEP} main-table --tables {input} --out-prefix {params.prefix} --plot {output.plot} --log {log}"
