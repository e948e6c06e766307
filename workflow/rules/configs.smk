# Per-job config files, written locally (no job): params = the config sections (JSON, sorted keys), so a
# config change re-runs the writer and, its file being newer, every job that reads it.
from onestep import outputs


rule job_config:
    output:
        f"{ROOT}/config/{{kind}}.yaml",
    params:
        cfg=lambda w: sections(config, *JOB_SECTIONS[w.kind]),
    wildcard_constraints:
        kind="|".join(JOB_SECTIONS),
    localrule: True
    run:
        outputs.write_yaml(output[0], json.loads(params.cfg))


rule run_config:
    output:
        f"{ROOT}/{{ablation}}/{{run}}/config.yaml",
    params:
        cfg=lambda w: json.dumps(RUNS[(w.ablation, w.run)].config, sort_keys=True),
    localrule: True
    run:
        outputs.write_yaml(output[0], json.loads(params.cfg))
