# Teacher preparation: the DDPM teacher, its DDIM pairs p_teacher(x0 | z), data statistics.
# teacher.pretrained (a local diffusers folder): the rule imports it instead of training.
PRETRAINED = [config["teacher"]["pretrained"]] if config["teacher"].get("pretrained") else []


rule teacher:
    input:
        f"{OUT}/mlflow/store.json",
        PRETRAINED,
    output:
        f"{ROOT}/teacher/teacher.pt",
    log:
        f"{LOGS}/teacher/{DATA}.log",
    params:
        cfg=cfg_json("dataset", "diffusion", "teacher", "tracking", "device"),
    threads: config["threads"]["prep"]
    resources:
        gpu=GPU_PER_JOB,
    shell:
        "onestep teacher --threads {threads} --cfg {params.cfg:q} --out {output} --log {log} > {log} 2>&1"


rule pairs:
    input:
        teacher=f"{ROOT}/teacher/teacher.pt",
    output:
        f"{ROOT}/teacher/pairs.npz",
    log:
        f"{LOGS}/pairs/{DATA}.log",
    params:
        cfg=cfg_json("diffusion", "pairs", "device"),
    threads: config["threads"]["prep"]
    resources:
        gpu=GPU_PER_JOB,
    shell:
        "onestep pairs --threads {threads} --cfg {params.cfg:q} --teacher {input.teacher} --out {output} > {log} 2>&1"


rule features:
    output:
        f"{ROOT}/features.pt",
    log:
        f"{LOGS}/features/{DATA}.log",
    params:
        cfg=cfg_json("dataset", "evaluation"),
    threads: config["threads"]["run"]
    shell:
        "onestep features --threads {threads} --cfg {params.cfg:q} --out {output} > {log} 2>&1"


rule reference:
    input:
        features,
    output:
        arrays=f"{ROOT}/reference.npz",
        summary=f"{ROOT}/reference.json",
    log:
        f"{LOGS}/reference/{DATA}.log",
    params:
        cfg=cfg_json("dataset", "evaluation"),
        features=features_arg,
    threads: config["threads"]["run"]
    resources:
        gpu=1 if IS_IMAGES else 0,  # images: Inception features of the training set (50k for CIFAR-10); points: CPU
    shell:
        "onestep reference --threads {threads} --cfg {params.cfg:q} {params.features} --out {output.arrays}"
        " --summary {output.summary} > {log} 2>&1"
