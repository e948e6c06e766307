"""Optuna tuning: studies that search a method's knobs, and the values they find, applied to runs.

Words, each for one thing:

- a **study** is one Optuna study (journal under results/optuna/<study>/): the lambda study (target
  tune_lambda) or one per method (target tune_baselines); its storage, sampler, pruner and trial counts are
  in `study`, its workers in `worker`, one trial's training and score in `objective`, and the recovery of a
  killed worker's trial in `reaper`;
- a study's **space** is the knobs it searches (`space`): `tune.lambda` and `tune.space` of its config; a
  method's own space is its `search_space` plus the student's knobs every method shares (STUDENT_SPACE);
- a study's **best** is its best trial, written as best.yaml when every trial has finished (`best`);
- the **values** are what the studies found: the tuned-values file (`values`), one set per method, under
  the teacher they were tuned under; a run **applies** values (`values.apply`, `values.resolve_run`), and a
  run with `method.lambda: tuned` takes the lambda study's best lambda (`values.resolve_lambda`);
- a knob is set by its config **key** (`keys`), the method's budget kept;
- `studies` writes the config of each of tune_baselines' studies;
- `summary` writes a study's and the studies' tables and figures.

Layers, lowest first: keys; space; study, reaper; best, values, studies; objective; worker; summary.
"""
