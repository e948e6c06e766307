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
    output:  # in `snakemake <target> --report report.html`: a category per ablation
        md=report(f"{TABLES}/{{ablation}}.md", category="{ablation}", subcategory="table", labels={"file": "table (markdown)"}),
        tex=f"{TABLES}/{{ablation}}.tex",
        csv=report(f"{TABLES}/{{ablation}}.csv", category="{ablation}", subcategory="table", labels={"file": "table (csv)"}),
        plot=report(f"{PLOTS}/{{ablation}}.png", category="{ablation}", subcategory="figures", labels={"file": "figure"}),
        curves=report(f"{PLOTS}/{{ablation}}_curves.png", category="{ablation}", subcategory="figures",
                      labels={"file": "training curves"}),
        samples=report(f"{PLOTS}/{{ablation}}_samples.png", category="{ablation}", subcategory="figures",
                       labels={"file": "samples"}),
    log:
        f"{LOGS}/table/{{ablation}}.log",
    params:
        prefix=wf.prefix("md", ".md"),
        tracking=P.tracking_config,
    priority: wf.targets.TABLE_PRIORITY  # as soon as its runs are evaluated
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
