"""Configuration: defaults + ablation grid -> one resolved, schema-checked config per run.

The Snakefile calls `load_workflow(config, repo, read_tuned)` when the workflow is parsed, so every bad value
stops the run with one message naming the key (and the file) before any job starts. Where each part lives:

- files.py: reading YAML files (file and line of an error), deep_merge, dotted keys, `--config` values
- schema.py: the JSON schemas and validation, one message per error
- sections.py: the typed sections (teacher, student, pairs, evaluation, tracking), each default once
- method.py: the method section, filled from the method's dataclass (`METHODS[name].Config`, methods/base.py)
- grids.py: ablation files -> runs, tier-relative budgets, the tuned ablations' checks
- policy.py: devices and GPUs per job, the GPU tier's checks
- results.py: what a job's or a run's config file holds (the sections results depend on), the dataset id
"""

from onestep.config.files import REPO, deep_merge, get_dotted, merged_files, read_file, set_dotted, yaml_values
from onestep.config.grids import Ablation, Run, check_files, check_tuned, grid_points, load_ablation, load_workflow, run_name, tier_relative
from onestep.config.method import method_names, method_section, resolve, with_method
from onestep.config.policy import check_device, check_gpu_tier, gpu_per_job, job_device, wanted_device
from onestep.config.results import (
    IMAGE_FLOOR,
    NOT_IN_RESULTS,
    NOT_IN_RUNS,
    base_config,
    dataset_id,
    result_config,
    run_result_config,
    sections_json,
    without_run,
)
from onestep.config.schema import check_finite, validate
from onestep.config.sections import SECTIONS, Evaluation, Pairs, Section, Student, Teacher, Tracking, plain_ddim
from onestep.errors import ConfigError

__all__ = [
    "IMAGE_FLOOR", "NOT_IN_RESULTS", "NOT_IN_RUNS", "REPO", "SECTIONS", "Ablation", "ConfigError", "Evaluation",
    "Pairs", "Run", "Section", "Student", "Teacher", "Tracking", "base_config", "check_device", "check_files", "check_finite",
    "check_gpu_tier", "check_tuned", "dataset_id", "deep_merge", "get_dotted", "gpu_per_job", "grid_points",
    "job_device", "load_ablation", "load_workflow", "merged_files", "method_names", "method_section",
    "plain_ddim", "read_file", "resolve", "result_config", "run_name", "run_result_config", "sections_json",
    "set_dotted", "tier_relative", "validate", "wanted_device", "with_method", "without_run", "yaml_values",
]
