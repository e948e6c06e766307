# Optuna studies, one machinery (onestep/tune.py): W worker jobs against one study (journal file), then a summary.
# The studies (STUDIES, common.smk): tune_lambda's over the curriculum's lambda, and tune_baselines' one per
# method of tune_baselines.grid over the method's declared search_space (config: rule tune_study_config).


rule tune_study_config:
    output:
        f"{ROOT}/config/tune_baselines/{{method}}.yaml",
    params:
        cfg=lambda w: json.dumps(BASELINE_STUDIES[w.method], sort_keys=True),
    localrule: True
    run:
        outputs.write_yaml(output[0], json.loads(params.cfg))


rule tune_worker:
    input:
        teacher=f"{ROOT}/teacher/teacher.pt",
        pairs=f"{ROOT}/teacher/pairs.npz",
        reference=f"{ROOT}/reference.npz",
        features=features,
        parent=ancient(f"{OUT}/mlflow/{{study}}.parent.json"),
        config=lambda w: STUDIES[w.study][0],
    output:
        f"{OUT}/optuna/{{study}}/worker-{{worker}}.json",
    log:
        f"{LOGS}/tune_worker/{{study}}-{{worker}}.log",
    params:
        features=features_arg,
        folder=f"{OUT}/optuna/{{study}}",
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
        workers=lambda w: expand(f"{OUT}/optuna/{w.study}/worker-{{worker}}.json", worker=range(STUDIES[w.study][1])),
        parent=f"{OUT}/mlflow/{{study}}.parent.json",
        config=lambda w: STUDIES[w.study][0],
    output:
        best=f"{OUT}/optuna/{{study}}/best.yaml",
        md=f"{OUT}/optuna/{{study}}/trials.md",
        tex=f"{OUT}/optuna/{{study}}/trials.tex",
        csv=f"{OUT}/optuna/{{study}}/trials.csv",
        plots=expand(f"{OUT}/optuna/{{{{study}}}}/{{name}}.png", name=["history", "intermediate", "slice"]),
    log:
        f"{LOGS}/tune_summary/{{study}}.log",
    params:
        folder=f"{OUT}/optuna/{{study}}",
    localrule: True
    shell:
        "{ONESTEP} tune-summary --config {input.config} --tracking {TRACKING_CONFIG} --folder {params.folder} --parent {input.parent} --log {log}"


# tune_baselines: the tuned-values file (onestep/tuned.py) from every method's study, and the studies' table
rule tune_gather:
    input:
        best=[f"{OUT}/optuna/{name}/best.yaml" for name in BASELINE_STUDY.values()],
        teacher=f"{ROOT}/teacher/teacher.pt",
    output:
        values=f"{ROOT}/tuned_baselines.yaml",
        md=f"{TABLES}/tune_baselines.md",
        tex=f"{TABLES}/tune_baselines.tex",
        csv=f"{TABLES}/tune_baselines.csv",
        plot=f"{PLOTS}/tune_baselines.png",
    log:
        f"{LOGS}/tune_gather/{DATA}.log",
    params:
        prefix=f"{TABLES}/tune_baselines",
    localrule: True
    shell:
        "{ONESTEP} tune-gather --best {input.best} --teacher {input.teacher} --out {output.values}"
        " --out-prefix {params.prefix} --plot {output.plot} --log {log}"
