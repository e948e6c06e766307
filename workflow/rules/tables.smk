# Paper table and plot of one ablation, from the stored metrics.json files alone (no training).
rule table:
    input:
        runs=lambda w: run_metrics(w.ablation),
        teachers=expand(f"{ROOT}/teacher/ddim-{{steps}}/metrics.json", steps=TEACHER_STEPS),
        reference=f"{ROOT}/reference.json",
        parent=f"{OUT}/mlflow/{{ablation}}.parent.json",
    output:
        md=f"{OUT}/tables/{{ablation}}.md",
        tex=f"{OUT}/tables/{{ablation}}.tex",
        csv=f"{OUT}/tables/{{ablation}}.csv",
        plot=f"{OUT}/plots/{{ablation}}.png",
    log:
        f"{LOGS}/table/{{ablation}}.log",
    params:
        cfg=cfg_json("tracking", "dataset"),
        axes=lambda w: " ".join(ABLATIONS[w.ablation].axes),
        title=lambda w: ABLATIONS[w.ablation].title,
        prefix=f"{OUT}/tables/{{ablation}}",
        table=lambda w: ABLATIONS[w.ablation].table,
    localrule: True
    shell:
        "onestep tables --threads {threads} --cfg {params.cfg:q} --ablation {wildcards.ablation} --runs {input.runs}"
        " --teachers {input.teachers} --reference {input.reference} --axes {params.axes}"
        " --title {params.title:q} --out-prefix {params.prefix} --plot {output.plot}"
        " --parent {input.parent} --table {params.table} > {log} 2>&1"
