# `snakemake paper`: every table and figure the docs quote for this dataset tier, copied under
# results/paper/<tier>/ as md, tex, csv and png (marked for `snakemake paper --report report.html`), and
# results/paper/<tier>/index.md listing each with the command that made it and its config hash.
from onestep.paper import config_hash

PAPER_DIR = f"{OUT}/paper/{DATA}"
# the configfiles this workflow was started with (after the default): what the commands in index.md repeat
_TIER = " ".join(f"--configfile {f}" for f in workflow.configfiles if Path(f).name != "config.yaml" or Path(f).parent.name != "config")
_CMD = lambda target: " ".join(["snakemake --cores 2", target, _TIER]).strip()  # noqa: E731


def _table_sources(name):
    return [f"{TABLES}/{name}.md", f"{TABLES}/{name}.tex", f"{TABLES}/{name}.csv", f"{PLOTS}/{name}.png"]


# Equal-effort tuning (a study per baseline method, then baselines_tuned) only with tune_baselines.paper: it
# trains methods x trials runs, more than the rest of the tier together (docs/results.md).
TUNED_IN_PAPER = config["tune_baselines"]["paper"]
# name -> (title, sources, command, config hash); an ablation that does not apply to the tier is left out
PAPER = {
    name: (ABLATIONS[name].title, _table_sources(name), _CMD(name),
           config_hash(config, ABLATIONS[name].file))
    for name in ABLATIONS if not ABLATIONS[name].skipped and (TUNED_IN_PAPER or not ABLATIONS[name].tuned)
}
if TUNED_IN_PAPER and BASELINE_STUDIES:
    PAPER["tune_baselines"] = ("Equal-effort tuning: a study per method (defaults vs tuned, validation metric)",
                               _table_sources("tune_baselines"), _CMD("tune_baselines"),
                               config_hash(config, *[ABLATIONS[config["tune_baselines"]["grid"]].file]))
PAPER["main"] = ("Main table: baseline and best point of every ablation", _table_sources("main"), _CMD("ablate_all"),
                 config_hash(config))
PAPER["tune_lambda"] = ("The tuning study over lambda (Optuna trials)",
                        [f"{OUT}/optuna/{STUDY}/trials.{e}" for e in ("md", "tex", "csv")]
                        + [f"{OUT}/optuna/{STUDY}/history.png"], _CMD("tune_lambda"), config_hash(config))


rule paper_spec:
    output:
        f"{PAPER_DIR}/paper.yaml",
    params:
        spec=json.dumps({"tier": DATA, "command": _CMD("paper"), "config_hash": config_hash(config),
                         "artefacts": [{"name": n, "title": t, "command": c, "config_hash": h, "sources": s}
                                       for n, (t, s, c, h) in PAPER.items()]}, sort_keys=True),
    localrule: True
    run:
        outputs.write_yaml(output[0], json.loads(params.spec))


rule paper_artefact:
    input:
        lambda w: PAPER[w.name][1],
    output:
        md=report(f"{PAPER_DIR}/{{name}}.md", category=DATA, subcategory="{name}", labels={"artefact": "{name}", "file": "table (markdown)"}),
        tex=f"{PAPER_DIR}/{{name}}.tex",
        csv=report(f"{PAPER_DIR}/{{name}}.csv", category=DATA, subcategory="{name}", labels={"artefact": "{name}", "file": "table (csv)"}),
        png=report(f"{PAPER_DIR}/{{name}}.png", category=DATA, subcategory="{name}", labels={"artefact": "{name}", "file": "figure"}),
    log:
        f"{LOGS}/paper/{DATA}-{{name}}.log",
    params:
        prefix=f"{PAPER_DIR}/{{name}}",
    wildcard_constraints:
        name="|".join(PAPER),
    localrule: True
    shell:
        "{ONESTEP} paper-artefact --src {input} --out-prefix {params.prefix} --log {log}"


rule paper_index:
    input:
        spec=f"{PAPER_DIR}/paper.yaml",
        artefacts=[f"{PAPER_DIR}/{name}.{ext}" for name in PAPER for ext in ("md", "tex", "csv", "png")],
    output:
        report(f"{PAPER_DIR}/index.md", category=DATA, subcategory="index", labels={"artefact": "index", "file": "index"}),
    log:
        f"{LOGS}/paper/{DATA}-index.log",
    localrule: True
    shell:
        "{ONESTEP} paper-index --spec {input.spec} --out {output} --log {log}"
