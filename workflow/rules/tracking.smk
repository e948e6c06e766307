# MLflow store and experiment, created once before jobs fan out (SQLite migrations race otherwise).
# The jobs' MLflow settings (the tracking file, Plan.write_tracking_config), written as Snakemake starts its jobs.
onstart:
    P.write_tracking_config()


rule init_tracking:
    """Create the MLflow store and experiment; re-run when the store or experiment changes (params), not when
    tracking.required or timeout_s does."""
    output:
        f"{OUT}/mlflow/store.json",
    log:
        f"{LOGS}/init_tracking.log",
    params:
        store=P.tracking_store,
        tracking=P.tracking_config,
    localrule: True
    shell:
        "{ONESTEP} init-tracking --threads {threads} --config {params.tracking} --out {output} --log {log}"


rule mlflow_parent:
    """The MLflow parent run of an ablation or a study, which its runs' MLflow runs nest under."""
    input:
        f"{OUT}/mlflow/store.json",
    output:
        f"{OUT}/mlflow/{{ablation}}.parent.json",
    log:
        f"{LOGS}/mlflow_parent/{{ablation}}.log",
    params:
        kind=P.parent_kind,
        tracking=P.tracking_config,
    localrule: True
    shell:
        "{ONESTEP} parent --threads {threads} --config {params.tracking} --ablation {wildcards.ablation}"
        " --kind {params.kind} --out {output} --log {log}"
