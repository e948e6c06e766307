# Per-job config files, written locally in Snakemake's own process (no job): params = the config sections
# (JSON, sorted keys), so a config change re-runs the writer and, its file being newer, every job that reads it.


rule job_config:
    """The config file of a job kind: the config sections its jobs read (onestep.workflow.JOB_SECTIONS)."""
    output:
        f"{ROOT}/config/{{kind}}.yaml",
    params:
        cfg=P.job_sections,
    wildcard_constraints:
        kind="|".join(wf.JOB_SECTIONS),
    localrule: True
    run:
        wf.write_config(params.cfg, output[0])


rule run_config:
    """A run's config.yaml; a `tuned:` ablation's (baselines_tuned) with its method's tuned values applied from the
    tuned-values file (checked against the teacher) and recorded under run.tuned."""
    input:
        P.tuned_values,
    output:
        f"{ROOT}/{{ablation}}/{{run}}/config.yaml",
    params:
        cfg=P.run_config_json,
    localrule: True
    run:
        wf.write_run_config(params.cfg, list(input), output[0])
