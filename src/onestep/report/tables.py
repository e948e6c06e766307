"""The table kinds an ablation's optional `table:` key picks, each `(spec, runs, teachers, reference,
out_prefix, plot) -> summary`, and the spec reader they share."""

from __future__ import annotations

from onestep.report.ablation import build
from onestep.report.baselines import build_baselines
from onestep.report.budget import build_budget
from onestep.report.compute import build_compute
from onestep.report.records import load_spec

TABLES = {"default": build, "baselines": build_baselines, "budget": build_budget, "compute": build_compute}

__all__ = ["TABLES", "load_spec"]
