# Optuna studies, one machinery (src/onestep/tuning/): W worker jobs against one study (journal file), then a summary.
# The studies (Plan.studies): tune_lambda's over method.lambda, and tune_baselines' one per method of
# tune_baselines.grid over the method's declared search_space (config: rule tune_study_config).


rule tune_study_config:
    """The config file of one method's study of tune_baselines (its search_space, a share of its budget)."""
    output:
        f"{ROOT}/config/tune_baselines/{{method}}.yaml",
    params:
        cfg=P.study_config_json,
    localrule: True
    run:
        wf.write_config(params.cfg, output[0])


rule tune_worker:
    """One worker of an Optuna study: trials against the study's journal until its budget is spent."""
    input:
        teacher=f"{ROOT}/teacher/teacher.pt",
        pairs=f"{ROOT}/teacher/pairs.npz",
        reference=f"{ROOT}/reference.npz",
        features=P.features,
        parent=ancient(f"{OUT}/mlflow/{{study}}.parent.json"),
        config=P.study_file,
    output:
        f"{OUT}/optuna/{{study}}/worker-{{worker}}.json",
    log:
        f"{LOGS}/tune_worker/{{study}}-{{worker}}.log",
    params:
        features=P.features_arg,
        folder=f"{OUT}/optuna/{{study}}",
        tracking=P.tracking_config,
    threads: config["threads"]["run"]
    resources:
        gpu=P.gpu_per_job,
    shell:
        "{ONESTEP} tune-worker --threads {threads} --config {input.config} --tracking {params.tracking}"
        " --teacher {input.teacher}"
        " --pairs {input.pairs} --reference {input.reference} {params.features} --parent {input.parent}"
        " --folder {params.folder} --worker {wildcards.worker} --out {output} --log {log}"


rule tune_summary:
    """A study's summary once its workers are done: best.yaml, the trials table and figures."""
    input:
        workers=P.study_workers,
        parent=f"{OUT}/mlflow/{{study}}.parent.json",
        config=P.study_file,
    output:
        best=f"{OUT}/optuna/{{study}}/best.yaml",
        md=f"{OUT}/optuna/{{study}}/trials.md",
        tex=f"{OUT}/optuna/{{study}}/trials.tex",
        csv=f"{OUT}/optuna/{{study}}/trials.csv",
        plots=expand(f"{OUT}/optuna/{{{{study}}}}/{{name}}.png", name=wf.STUDY_PLOTS),
    log:
        f"{LOGS}/tune_summary/{{study}}.log",
    params:
        folder=f"{OUT}/optuna/{{study}}",
        tracking=P.tracking_config,
    localrule: True
    shell:
        "{ONESTEP} tune-summary --config {input.config} --tracking {params.tracking} --folder {params.folder}"
        " --parent {input.parent} --log {log}"


rule tune_gather:
    """tune_baselines: the tuned-values file from every method's study, and the studies' table and figure."""
    input:
        best=P.baseline_bests(),
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
        prefix=wf.prefix("md", ".md"),
    localrule: True
    shell:
        "{ONESTEP} tune-gather --best {input.best} --teacher {input.teacher} --out {output.values}"
        " --out-prefix {params.prefix} --plot {output.plot} --log {log}"
