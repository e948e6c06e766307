# MLflow store and experiment, created once before jobs fan out (SQLite migrations race otherwise).
rule init_tracking:
    output:
        f"{OUT}/mlflow/store.json",
    log:
        f"{LOGS}/init_tracking.log",
    params:
        cfg=cfg_json("tracking", "dataset"),
    localrule: True
    shell:
        "onestep init-tracking --threads {threads} --cfg {params.cfg:q} --out {output} > {log} 2>&1"


rule mlflow_parent:
    input:
        f"{OUT}/mlflow/store.json",
    output:
        f"{OUT}/mlflow/{{ablation}}.parent.json",
    log:
        f"{LOGS}/mlflow_parent/{{ablation}}.log",
    params:
        cfg=cfg_json("tracking", "dataset"),
        kind=lambda w: "study" if w.ablation == STUDY else "ablation",
    localrule: True
    shell:
        "onestep parent --threads {threads} --cfg {params.cfg:q} --ablation {wildcards.ablation}"
        " --kind {params.kind} --out {output} > {log} 2>&1"
