# Teacher preparation: the DDPM teacher, its pairs p_teacher(x0 | z) (pairs.solver), data statistics.
# Each job writes its own log (--log) and attaches it to its MLflow run once complete.


rule teacher:
    """Train the DDPM teacher, or import teacher.pretrained (a local diffusers folder)."""
    input:
        ancient(f"{OUT}/mlflow/store.json"),  # made first; a new tracking store re-trains nothing
        P.pretrained,
        config=P.job_config("teacher"),
    output:
        f"{ROOT}/teacher/teacher.pt",
    log:
        f"{LOGS}/teacher/{DATA}.log",
    params:
        code=wf.code("teacher"),  # the source files this job runs: a code change re-runs it
        tracking=P.tracking_config,
    threads: config["threads"]["prep"]
    resources:
        gpu=P.gpu_per_job,
    shell:
        "{ONESTEP} teacher --threads {threads} --config {input.config} --tracking {params.tracking} --out {output}"
        " --log {log}"


rule pairs:
    """The teacher's ODE solves from fixed noise z to x0 (pairs.solver): the pairs every distillation shares."""
    input:
        teacher=f"{ROOT}/teacher/teacher.pt",
        config=P.job_config("pairs"),
    output:
        f"{ROOT}/teacher/pairs.npz",
    log:
        f"{LOGS}/pairs/{DATA}.log",
    params:
        code=wf.code("pairs"),
    threads: config["threads"]["prep"]
    resources:
        gpu=P.gpu_per_job,
    shell:
        "{ONESTEP} pairs --threads {threads} --config {input.config} --teacher {input.teacher} --out {output} --log {log}"


rule trajectory:
    """The teacher's DDIM states x_t(z) at a method's grid (its state_grid hook), once per teacher and grid: on the
    pairs' z (read in training) or on the held-out stage noise (the method's diagnostics in evaluation)."""
    input:
        teacher=f"{ROOT}/teacher/teacher.pt",
        pairs=P.trajectory_pairs,
        config=P.job_config("trajectory"),
    output:
        f"{ROOT}/teacher/trajectory/{{noise}}-{{grid}}.npz",
    log:
        f"{LOGS}/trajectory/{DATA}-{{noise}}-{{grid}}.log",
    params:
        code=wf.code("trajectory"),
        pairs=P.trajectory_pairs_arg,
        times=P.grid_times,
    threads: config["threads"]["prep"]
    priority: wf.targets.EVALUATE_PRIORITY  # an evaluation reads it: not after every training
    resources:
        gpu=P.gpu_per_job,
    shell:
        "{ONESTEP} trajectory --threads {threads} --config {input.config} --teacher {input.teacher} --times {params.times}"
        " {params.pairs} --out {output} --log {log}"


rule features:
    """Images: the feature network the scores use (evaluation.feature_net classifier, trained on the dataset)."""
    input:
        config=P.job_config("features"),
    output:
        f"{ROOT}/features.pt",
    log:
        f"{LOGS}/features/{DATA}.log",
    params:
        code=wf.code("features"),
    threads: config["threads"]["run"]
    priority: wf.targets.EVALUATE_PRIORITY  # an evaluation reads it: not after every training
    shell:
        "{ONESTEP} features --threads {threads} --config {input.config} --out {output} --log {log}"


rule reference:
    """The reference sample (2-D) or reference features (images) and the data-vs-data floor."""
    input:
        P.features,
        config=P.job_config("reference"),
    output:
        arrays=f"{ROOT}/reference.npz",
        summary=f"{ROOT}/reference.json",
    log:
        f"{LOGS}/reference/{DATA}.log",
    params:
        code=wf.code("reference"),
        features=P.features_arg,
        **P.reference_params,  # images: how the floor is drawn (a new way re-runs this rule)
    threads: config["threads"]["run"]
    priority: wf.targets.EVALUATE_PRIORITY  # an evaluation reads it: not after every training
    resources:
        gpu=1 if P.is_images else 0,  # images: Inception features of the training set (50k for CIFAR-10); points: CPU
    shell:
        "{ONESTEP} reference --threads {threads} --config {input.config} {params.features} --out {output.arrays}"
        " --summary {output.summary} --log {log}"
