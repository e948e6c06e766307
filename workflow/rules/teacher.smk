# Teacher preparation: the DDPM teacher, its pairs p_teacher(x0 | z) (pairs.solver), data statistics.
# teacher.pretrained (a local diffusers folder): the rule imports it instead of training.
# Each job writes its own log (--log) and attaches it to its MLflow run once complete.
PRETRAINED = [config["teacher"]["pretrained"]] if config["teacher"].get("pretrained") else []


rule teacher:
    input:
        ancient(f"{OUT}/mlflow/store.json"),  # made first; a new tracking store re-trains nothing
        PRETRAINED,
        config=job_config("teacher"),
    output:
        f"{ROOT}/teacher/teacher.pt",
    log:
        f"{LOGS}/teacher/{DATA}.log",
    threads: config["threads"]["prep"]
    resources:
        gpu=GPU_PER_JOB,
    shell:
        "{ONESTEP} teacher --threads {threads} --config {input.config} --tracking {TRACKING_CONFIG} --out {output}"
        " --log {log}"


rule pairs:
    input:
        teacher=f"{ROOT}/teacher/teacher.pt",
        config=job_config("pairs"),
    output:
        f"{ROOT}/teacher/pairs.npz",
    log:
        f"{LOGS}/pairs/{DATA}.log",
    threads: config["threads"]["prep"]
    resources:
        gpu=GPU_PER_JOB,
    shell:
        "{ONESTEP} pairs --threads {threads} --config {input.config} --teacher {input.teacher} --out {output} --log {log}"


# The teacher's DDIM states x_t(z) at a method's grid (its state_grid hook), once per teacher and grid: on the
# pairs' z (read in training) or on the held-out stage noise (the method's diagnostics in evaluation).
rule trajectory:
    input:
        teacher=f"{ROOT}/teacher/teacher.pt",
        pairs=lambda w: [f"{ROOT}/teacher/pairs.npz"] if w.noise == "pairs" else [],
        config=job_config("trajectory"),
    output:
        f"{ROOT}/teacher/trajectory/{{noise}}-{{grid}}.npz",
    log:
        f"{LOGS}/trajectory/{DATA}-{{noise}}-{{grid}}.log",
    params:
        pairs=lambda w: f"--pairs {ROOT}/teacher/pairs.npz" if w.noise == "pairs" else "",
        times=lambda w: " ".join(map(str, STATE_GRIDS[w.grid])),
    threads: config["threads"]["prep"]
    resources:
        gpu=GPU_PER_JOB,
    shell:
        "{ONESTEP} trajectory --threads {threads} --config {input.config} --teacher {input.teacher} --times {params.times}"
        " {params.pairs} --out {output} --log {log}"


rule features:
    input:
        config=job_config("features"),
    output:
        f"{ROOT}/features.pt",
    log:
        f"{LOGS}/features/{DATA}.log",
    threads: config["threads"]["run"]
    shell:
        "{ONESTEP} features --threads {threads} --config {input.config} --out {output} --log {log}"


rule reference:
    input:
        features,
        config=job_config("reference"),
    output:
        arrays=f"{ROOT}/reference.npz",
        summary=f"{ROOT}/reference.json",
    log:
        f"{LOGS}/reference/{DATA}.log",
    params:
        features=features_arg,
        **({"floor": IMAGE_FLOOR} if IS_IMAGES else {}),  # how the images' floor is drawn: a new way re-runs this rule
    threads: config["threads"]["run"]
    resources:
        gpu=1 if IS_IMAGES else 0,  # images: Inception features of the training set (50k for CIFAR-10); points: CPU
    shell:
        "{ONESTEP} reference --threads {threads} --config {input.config} {params.features} --out {output.arrays}"
        " --summary {output.summary} --log {log}"
