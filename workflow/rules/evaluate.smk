# One-step samples on the fixed held-out noise, scored against the reference; teacher reference rows.


rule evaluate:
    """Score one trained run: its one-step samples on the held-out noise against the reference (metrics.json)."""
    input:
        ckpt=f"{ROOT}/{{ablation}}/{{run}}/student.pt",
        summary=f"{ROOT}/{{ablation}}/{{run}}/train.json",
        config=f"{ROOT}/{{ablation}}/{{run}}/config.yaml",
        teacher=f"{ROOT}/teacher/teacher.pt",
        reference=f"{ROOT}/reference.npz",
        states=P.stage_states,
        features=P.features,
    output:
        metrics=report(f"{ROOT}/{{ablation}}/{{run}}/metrics.json", category="{ablation}", subcategory="runs",
                       labels={"run": "{run}", "file": "metrics.json"}),
        plot=report(f"{ROOT}/{{ablation}}/{{run}}/samples.png", category="{ablation}", subcategory="runs",
                    labels={"run": "{run}", "file": "samples"}),
    log:
        f"{LOGS}/evaluate/{{ablation}}/{{run}}.log",
    params:
        code=wf.code("evaluate", P),  # the source files of its scoring: a code change re-scores
        config_hash=P.run_hash,  # a changed config re-runs the evaluation, even when its training was killed
        run=wf.folder("config"),
        tracking=P.tracking_config,
        features=P.features_arg,
        states=P.stage_states_arg,
    threads: config["threads"]["run"]
    priority: wf.targets.EVALUATE_PRIORITY  # as soon as its training is done (trainings: ablation by ablation)
    resources:
        gpu=P.gpu_per_job,
    shell:
        "{ONESTEP} evaluate --threads {threads} --run {params.run} --tracking {params.tracking} --teacher {input.teacher}"
        " --reference {input.reference}"
        " {params.features} {params.states} --out {output.metrics} --plot {output.plot} --log {log}"


rule teacher_eval:
    """A teacher row: the teacher's DDIM with {steps} steps on the held-out noise, scored like a run."""
    input:
        teacher=f"{ROOT}/teacher/teacher.pt",
        reference=f"{ROOT}/reference.npz",
        features=P.features,
        config=P.job_config("teacher_eval"),
    output:
        metrics=f"{ROOT}/teacher/ddim-{{steps}}/metrics.json",
        plot=f"{ROOT}/teacher/ddim-{{steps}}/samples.png",
    log:
        f"{LOGS}/teacher_eval/{DATA}-ddim-{{steps}}.log",
    params:
        code=wf.code("teacher_eval"),
        tracking=P.tracking_config,
        features=P.features_arg,
    threads: config["threads"]["run"]
    priority: wf.targets.EVALUATE_PRIORITY  # an evaluation reads it: not after every training
    resources:
        gpu=P.gpu_per_job,
    shell:
        "{ONESTEP} teacher-eval --threads {threads} --config {input.config} --tracking {params.tracking}"
        " --teacher {input.teacher}"
        " --reference {input.reference} {params.features} --steps {wildcards.steps} --out {output.metrics}"
        " --plot {output.plot} --log {log}"


rule teacher_eval_pairs:
    """The pairs' solver as a teacher row (pairs.solver, ddim_steps, clip_x0), when it is not a plain DDIM row."""
    input:
        teacher=f"{ROOT}/teacher/teacher.pt",
        reference=f"{ROOT}/reference.npz",
        features=P.features,
        config=P.job_config("teacher_eval"),
    output:
        metrics=f"{ROOT}/teacher/pairs-solver/metrics.json",
        plot=f"{ROOT}/teacher/pairs-solver/samples.png",
    log:
        f"{LOGS}/teacher_eval/{DATA}-pairs-solver.log",
    params:
        code=wf.code("teacher_eval"),
        tracking=P.tracking_config,
        features=P.features_arg,
        solver=P.pairs_solver_args,
    threads: config["threads"]["run"]
    priority: wf.targets.EVALUATE_PRIORITY  # an evaluation reads it: not after every training
    resources:
        gpu=P.gpu_per_job,
    shell:
        "{ONESTEP} teacher-eval --threads {threads} --config {input.config} --tracking {params.tracking}"
        " --teacher {input.teacher}"
        " --reference {input.reference} {params.features} {params.solver} --out {output.metrics} --plot {output.plot}"
        " --log {log}"
