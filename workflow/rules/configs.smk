# Per-job config files, written locally (no job): params = the config sections (JSON, sorted keys), so a
# config change re-runs the writer and, its file being newer, every job that reads it.
from onestep import outputs


rule job_config:
    output:
        f"{ROOT}/config/{{kind}}.yaml",
    params:
        cfg=lambda w: sections_json(config, *JOB_SECTIONS[w.kind]),
    wildcard_constraints:
        kind="|".join(JOB_SECTIONS),
    localrule: True
    run:
        outputs.write_yaml(output[0], json.loads(params.cfg))


# A run of a `tuned:` ablation (baselines_tuned): its method's tuned values applied from the tuned-values file
# (checked against the teacher), recorded under run.tuned: the config.yaml says what the run trains with.
rule run_config:
    input:
        tuned_values,
    output:
        f"{ROOT}/{{ablation}}/{{run}}/config.yaml",
    params:
        cfg=lambda w: json.dumps(RUNS[(w.ablation, w.run)].config, sort_keys=True),
    localrule: True
    run:
        cfg = json.loads(params.cfg)
        if input:  # [tuned-values file, teacher.pt]
            cfg = tune_values.resolve_run(cfg, input[0], input[1])
        outputs.write_yaml(output[0], cfg)
