# `snakemake paper`: every table and figure the docs quote for this dataset tier, copied under
# results/paper/<tier>/ as md, tex, csv and png (marked for `snakemake paper --report report.html`), and
# results/paper/<tier>/index.md listing each with the command that made it and its config hash (Plan.paper).


rule paper_spec:
    """The paper spec paper.yaml: the tier, its command and config hash, and every artefact's."""
    output:
        f"{P.paper_dir}/paper.yaml",
    params:
        spec=P.paper_spec(),
    localrule: True
    run:
        wf.write_config(params.spec, output[0])


rule paper_artefact:
    """One artefact of the tier (a table and its figure) copied from its target's outputs under results/paper/."""
    input:
        P.paper_sources,
    output:
        md=report(f"{P.paper_dir}/{{name}}.md", category=DATA, subcategory="{name}", labels={"artefact": "{name}", "file": "table (markdown)"}),
        tex=f"{P.paper_dir}/{{name}}.tex",
        csv=report(f"{P.paper_dir}/{{name}}.csv", category=DATA, subcategory="{name}", labels={"artefact": "{name}", "file": "table (csv)"}),
        png=report(f"{P.paper_dir}/{{name}}.png", category=DATA, subcategory="{name}", labels={"artefact": "{name}", "file": "figure"}),
    log:
        f"{LOGS}/paper/{DATA}-{{name}}.log",
    params:
        prefix=wf.prefix("md", ".md"),
    wildcard_constraints:
        name="|".join(P.paper),
    localrule: True
    shell:
        "{ONESTEP} paper-artefact --src {input} --out-prefix {params.prefix} --log {log}"


rule paper_index:
    """index.md of the tier's paper folder: every artefact with its files, command and config hash."""
    input:
        spec=f"{P.paper_dir}/paper.yaml",
        artefacts=P.paper_files(),
    output:
        report(f"{P.paper_dir}/index.md", category=DATA, subcategory="index", labels={"artefact": "index", "file": "index"}),
    log:
        f"{LOGS}/paper/{DATA}-index.log",
    localrule: True
    shell:
        "{ONESTEP} paper-index --spec {input.spec} --out {output} --log {log}"
