# MLflow store and experiment, created once before jobs fan out (SQLite migrations race otherwise).
rule init_tracking:
    input:
        config=job_config("tracking"),
    output:
        f"{OUT}/mlflow/store.json",
    log:
        f"{LOGS}/init_tracking.log",
    params:
    localrule: True
    shell:
        "{ONESTEP} init-tracking --threads {threads} --config {input.config} --out {output} --log {log}"


rule mlflow_parent:
    input:
        f"{OUT}/mlflow/store.json",
        config=job_config("tracking"),
    output:
        f"{OUT}/mlflow/{{ablation}}.parent.json",
    log:
        f"{LOGS}/mlflow_parent/{{ablation}}.log",
    params:
        kind=lambda w: "study" if w.ablation in STUDIES else "ablation",
    localrule: True
    shell:
        "{ONESTEP} parent --threads {threads} --config {input.config} --ablation {wildcards.ablation}"
        " --kind {params.kind} --out {output} --log {log}"
