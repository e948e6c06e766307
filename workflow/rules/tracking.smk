# MLflow store and experiment, created once before jobs fan out (SQLite migrations race otherwise).
# The jobs' MLflow settings (TRACKING_CONFIG, common.smk), written as Snakemake starts its jobs.
onstart:
    write_tracking_config()


# Re-run when the store or experiment changes (params), not when tracking.required or timeout_s does.
rule init_tracking:
    output:
        f"{OUT}/mlflow/store.json",
    log:
        f"{LOGS}/init_tracking.log",
    params:
        store=TRACKING_STORE,
    localrule: True
    shell:
        "{ONESTEP} init-tracking --threads {threads} --config {TRACKING_CONFIG} --out {output} --log {log}"


rule mlflow_parent:
    input:
        f"{OUT}/mlflow/store.json",
    output:
        f"{OUT}/mlflow/{{ablation}}.parent.json",
    log:
        f"{LOGS}/mlflow_parent/{{ablation}}.log",
    params:
        kind=lambda w: "study" if w.ablation in STUDIES else "ablation",
    localrule: True
    shell:
        "{ONESTEP} parent --threads {threads} --config {TRACKING_CONFIG} --ablation {wildcards.ablation}"
        " --kind {params.kind} --out {output} --log {log}"
