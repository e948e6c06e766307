# One-step samples on the fixed held-out noise, scored against the reference; teacher reference rows.
rule evaluate:
    input:
        ckpt=f"{ROOT}/{{ablation}}/{{run}}/student.pt",
        summary=f"{ROOT}/{{ablation}}/{{run}}/train.json",
        config=f"{ROOT}/{{ablation}}/{{run}}/config.yaml",
        teacher=f"{ROOT}/teacher/teacher.pt",
        reference=f"{ROOT}/reference.npz",
        states=stage_states,
        features=features,
    output:
        metrics=f"{ROOT}/{{ablation}}/{{run}}/metrics.json",
        plot=f"{ROOT}/{{ablation}}/{{run}}/samples.png",
    log:
        f"{LOGS}/evaluate/{{ablation}}/{{run}}.log",
    params:
        config_hash=run_hash,  # a changed config re-runs the evaluation, even when its training was killed
        run=f"{ROOT}/{{ablation}}/{{run}}",
        features=features_arg,
        states=stage_states_arg,
    threads: config["threads"]["run"]
    resources:
        gpu=GPU_PER_JOB,
    shell:
        "{ONESTEP} evaluate --threads {threads} --run {params.run} --tracking {TRACKING_CONFIG} --teacher {input.teacher}"
        " --reference {input.reference}"
        " {params.features} {params.states} --out {output.metrics} --plot {output.plot} --log {log}"


rule teacher_eval:
    input:
        teacher=f"{ROOT}/teacher/teacher.pt",
        reference=f"{ROOT}/reference.npz",
        features=features,
        config=job_config("teacher_eval"),
    output:
        metrics=f"{ROOT}/teacher/ddim-{{steps}}/metrics.json",
        plot=f"{ROOT}/teacher/ddim-{{steps}}/samples.png",
    log:
        f"{LOGS}/teacher_eval/{DATA}-ddim-{{steps}}.log",
    params:
        features=features_arg,
    threads: config["threads"]["run"]
    resources:
        gpu=GPU_PER_JOB,
    shell:
        "{ONESTEP} teacher-eval --threads {threads} --config {input.config} --tracking {TRACKING_CONFIG}"
        " --teacher {input.teacher}"
        " --reference {input.reference} {params.features} --steps {wildcards.steps} --out {output.metrics}"
        " --plot {output.plot} --log {log}"


# The pairs' solver as a reference row (pairs.solver, pairs.ddim_steps, pairs.clip_x0), when it is not one of the
# plain DDIM rows already (evaluation.teacher_steps).
rule teacher_eval_pairs:
    input:
        teacher=f"{ROOT}/teacher/teacher.pt",
        reference=f"{ROOT}/reference.npz",
        features=features,
        config=job_config("teacher_eval"),
    output:
        metrics=f"{ROOT}/teacher/pairs-solver/metrics.json",
        plot=f"{ROOT}/teacher/pairs-solver/samples.png",
    log:
        f"{LOGS}/teacher_eval/{DATA}-pairs-solver.log",
    params:
        features=features_arg,
        solver=config["pairs"].get("solver", "ddim"),
        steps=config["pairs"]["ddim_steps"],
        clip=f"--clip-x0 {config['pairs']['clip_x0']}" if config["pairs"].get("clip_x0") is not None else "",
    threads: config["threads"]["run"]
    resources:
        gpu=GPU_PER_JOB,
    shell:
        "{ONESTEP} teacher-eval --threads {threads} --config {input.config} --tracking {TRACKING_CONFIG}"
        " --teacher {input.teacher}"
        " --reference {input.reference} {params.features} --steps {params.steps} --solver {params.solver}"
        " {params.clip} --out {output.metrics} --plot {output.plot} --log {log}"
