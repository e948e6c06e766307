# Training of one grid point x seed of an ablation (the method comes from the run's config).
rule train:
    input:
        teacher=f"{ROOT}/teacher/teacher.pt",
        pairs=f"{ROOT}/teacher/pairs.npz",
        parent=ancient(f"{OUT}/mlflow/{{ablation}}.parent.json"),
        tuned=tuned,
        same_as=same_as,
        states=pair_states,
        features=features,
        config=run_config,
    output:
        ckpt=f"{ROOT}/{{ablation}}/{{run}}/student.pt",
        summary=f"{ROOT}/{{ablation}}/{{run}}/train.json",
    log:
        f"{LOGS}/train/{{ablation}}/{{run}}.log",
    params:
        out=f"{ROOT}/{{ablation}}/{{run}}",
        tuned=tuned_arg,
        same_as=same_as_arg,
        states=pair_states_arg,
        features=features_arg,
    threads: config["threads"]["run"]
    resources:
        gpu=GPU_PER_JOB,
    shell:
        "{ONESTEP} train --threads {threads} --config {input.config} --tracking {TRACKING_CONFIG} --teacher {input.teacher}"
        " --pairs {input.pairs}"
        " --parent {input.parent} {params.tuned} {params.same_as} {params.states} {params.features} --out {params.out} --log {log}"
