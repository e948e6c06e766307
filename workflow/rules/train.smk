# Training of one grid point x seed of an ablation, for every method (the method comes from the run's config).


rule train:
    """Train one run (grid point x seed) of an ablation: the student of its method, from the teacher and its pairs."""
    input:
        teacher=f"{ROOT}/teacher/teacher.pt",
        pairs=f"{ROOT}/teacher/pairs.npz",
        parent=ancient(f"{OUT}/mlflow/{{ablation}}.parent.json"),
        lambda_best=P.lambda_best,
        same_as=P.same_as,
        states=P.pair_states,
        features=P.features,
        config=P.run_config,
    output:
        ckpt=f"{ROOT}/{{ablation}}/{{run}}/student.pt",
        summary=f"{ROOT}/{{ablation}}/{{run}}/train.json",
    log:
        f"{LOGS}/train/{{ablation}}/{{run}}.log",
    params:
        code=wf.code("train", P),  # the source files this run's training runs: a code change re-runs it
        out=wf.folder("ckpt", "output"),
        tracking=P.tracking_config,
        lambda_best=P.lambda_best_arg,
        same_as=P.same_as_arg,
        states=P.pair_states_arg,
        features=P.features_arg,
    threads: config["threads"]["run"]
    priority: wf.targets.training_priority(list(P.ablations))  # ablation by ablation
    resources:
        gpu=P.gpu_per_job,
    shell:
        "{ONESTEP} train --threads {threads} --config {input.config} --tracking {params.tracking} --teacher {input.teacher}"
        " --pairs {input.pairs}"
        " --parent {input.parent} {params.lambda_best} {params.same_as} {params.states} {params.features} --out {params.out} --log {log}"
