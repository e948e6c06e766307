# Included last: a requested target that is neither a rule nor a file path stops here with the valid targets
# (rules that make no file of their own), the closest first, instead of Snakemake's bare MissingRuleException.
wf.targets.check(wf.targets.requested(), {r.name: not r.output for r in workflow.rules})
