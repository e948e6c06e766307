# Training of one grid point x seed of an ablation (the method comes from the run's config).
rule train:
    input:
        teacher=f"{ROOT}/teacher/teacher.pt",
        pairs=f"{ROOT}/teacher/pairs.npz",
        parent=f"{OUT}/mlflow/{{ablation}}.parent.json",
        tuned=tuned,
        features=features,
    output:
        ckpt=f"{ROOT}/{{ablation}}/{{run}}/student.pt",
        summary=f"{ROOT}/{{ablation}}/{{run}}/train.json",
        config=f"{ROOT}/{{ablation}}/{{run}}/config.yaml",
    log:
        f"{LOGS}/train/{{ablation}}/{{run}}.log",
    params:
        cfg=run_cfg,
        out=f"{ROOT}/{{ablation}}/{{run}}",
        tuned=tuned_arg,
        features=features_arg,
    threads: config["threads"]["run"]
    resources:
        gpu=GPU_PER_JOB,
    shell:
        "onestep train --threads {threads} --cfg {params.cfg:q} --teacher {input.teacher} --pairs {input.pairs}"
        " --parent {input.parent} {params.tuned} {params.features} --out {params.out} --log {log} > {log} 2>&1"
