# Parse-time set-up: the workflow's plan (onestep/workflow.py), made once from the validated config and every
# ablation grid (one message, before any job). The one rule file that imports the package: the others read
# `P` (the plan), `wf` (the module) and the folders bound here.
from onestep import workflow as wf

P = wf.Plan.load(config, workflow.config_settings.overwrite_config, workflow.basedir, workflow.configfiles)
ONESTEP = wf.ONESTEP  # the CLI through the interpreter that runs Snakemake
OUT, DATA, ROOT, LOGS, TABLES, PLOTS = P.out, P.data, P.root, P.logs, P.tables, P.plots

# Local runs (no --jobs, i.e. no cluster executor): at most one `gpu=1` job per visible GPU. With no GPU
# the constraint scales `gpu=1` down to 0 and the jobs run on CPU. An explicit --resources gpu=N wins.
# `device: cuda` on a machine without one stops here (a cluster's login node may lack a GPU: its jobs check).
if workflow.nodes is None:
    P.check_local_device()
    if "gpu" not in workflow.global_resources:
        workflow.register_resource("gpu", wf.local_gpus())


wildcard_constraints:
    **P.wildcard_constraints,
