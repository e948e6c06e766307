# Optuna search over lambda: W worker jobs against one study (journal file), then a summary.
TUNE_DIR = f"{OUT}/optuna/{STUDY}"


rule tune_worker:
    input:
        teacher=f"{ROOT}/teacher/teacher.pt",
        pairs=f"{ROOT}/teacher/pairs.npz",
        reference=f"{ROOT}/reference.npz",
        features=features,
        parent=ancient(f"{OUT}/mlflow/{STUDY}.parent.json"),
        config=job_config("tune"),
    output:
        f"{TUNE_DIR}/worker-{{worker}}.json",
    log:
        f"{LOGS}/tune_worker/{STUDY}-{{worker}}.log",
    params:
        features=features_arg,
        folder=TUNE_DIR,
    threads: config["threads"]["run"]
    resources:
        gpu=GPU_PER_JOB,
    shell:
        "{ONESTEP} tune-worker --threads {threads} --config {input.config} --tracking {TRACKING_CONFIG}"
        " --teacher {input.teacher}"
        " --pairs {input.pairs} --reference {input.reference} {params.features} --parent {input.parent}"
        " --folder {params.folder} --worker {wildcards.worker} --out {output} --log {log}"


rule tune_summary:
    input:
        workers=expand(f"{TUNE_DIR}/worker-{{worker}}.json", worker=range(config["tune"]["workers"])),
        parent=f"{OUT}/mlflow/{STUDY}.parent.json",
        config=job_config("tune"),
    output:
        best=f"{TUNE_DIR}/best.yaml",
        md=f"{TUNE_DIR}/trials.md",
        tex=f"{TUNE_DIR}/trials.tex",
        csv=f"{TUNE_DIR}/trials.csv",
        plots=expand(f"{TUNE_DIR}/{{name}}.png", name=["history", "intermediate", "lambda_slice"]),
    log:
        f"{LOGS}/tune_summary/{STUDY}.log",
    params:
        folder=TUNE_DIR,
    localrule: True
    shell:
        "{ONESTEP} tune-summary --config {input.config} --tracking {TRACKING_CONFIG} --folder {params.folder} --parent {input.parent} --log {log}"
