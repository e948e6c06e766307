"""One trial of any method's study: train the student with the trial's knobs, report at phase ends, score.

The objective is the tables' headline metric (metrics.headline, evaluation.headline: TV against the exact
density on the 2-D datasets, FID on images) of G(z, 0) on a validation sample: noise and data drawn with
`tune.validation` seeds, separate from the evaluation noise the tables use.
A diverging trial (NaN/Inf loss) is FAIL with its reason in user attr `fail_reason`. Every trial is an MLflow
run nested under the study's parent run (side channel only: `recorder_factory`); its counted budget (optimiser
steps, student forward/backward passes, teacher evaluations, wall time) is also a user attr of the trial.
"""

from __future__ import annotations

import optuna
import torch

from onestep import data
from onestep.evaluate import eval_noise, kind, one_step, score
from onestep.training.loop import DivergenceError
from onestep.training.train import train_student
from onestep.tuning.reaper import Heartbeat
from onestep.tuning.space import suggest
from onestep.tuning.study import BUDGET, phases


def validation_set(cfg: dict, ref: dict, shape: tuple[int, ...]) -> tuple[torch.Tensor, dict, dict]:
    """Validation noise and reference, drawn with their own seeds (never the evaluation noise)."""
    val = cfg["tune"]["validation"]
    vcfg = {**cfg, "evaluation": {**cfg["evaluation"], "num_samples": val["num_samples"],
                                  "noise_seed": val["noise_seed"]}}
    z = eval_noise(vcfg, shape)
    if kind(cfg) == "points":
        ref = {"x": data.sample(cfg["dataset"], val["num_samples"], val["reference_seed"]).numpy()}
    return z, ref, vcfg


class Objective:
    """One trial of the study: train the config's method with the suggested knobs, report at its phase ends
    (when pruning), score G(z, 0) on the validation set."""

    def __init__(self, cfg, teacher, pairs, ref, features, recorder_factory, device="cpu"):
        self.cfg, self.teacher, self.pairs, self.features = cfg, teacher, pairs, features
        self.record, self.device = recorder_factory, device
        self.z, self.ref, self.vcfg = validation_set(cfg, ref, tuple(pairs["z"].shape[1:]))

    def value(self, cfg: dict, model: torch.nn.Module) -> float:
        x = one_step(cfg, self.teacher, model, self.z.to(self.device))
        res = score(x, self.ref, self.vcfg, self.features)
        return float(res["metrics"][res["primary"]])

    def __call__(self, trial: optuna.Trial) -> float:
        cfg = suggest(trial, self.cfg)
        every = self.cfg["tune"]["report_every"]
        pruned = self.cfg["tune"]["pruner"] != "none"  # reports at phase ends (the method's `phases`) only when pruning
        with Heartbeat(trial, self.cfg["tune"]["heartbeat_s"]), self.record(trial, cfg) as rec:  # owner claimed first

            def checkpoint(phase: int, step: int, model: torch.nn.Module) -> None:
                if (phase + 1) % every or phase + 1 >= phases(cfg):  # the last phase is the objective itself
                    return
                v = self.value(cfg, model)
                trial.report(v, phase + 1)
                rec.metrics({"val_metric": v}, phase + 1)
                if trial.should_prune():
                    rec.tag("state", "PRUNED")
                    raise optuna.TrialPruned(f"pruned after stage {phase + 1}: {v:.4g}")

            try:
                model, summary = train_student(cfg, self.teacher, self.pairs, self.device, rec.metrics,
                                               progress=False, on_phase_end=checkpoint if pruned else None)
            except DivergenceError as e:
                trial.set_user_attr("fail_reason", str(e))
                rec.tag("state", "FAIL")
                rec.tag("fail_reason", str(e))
                raise
            v = self.value(cfg, model)
            trial.set_user_attr("budget", {k: summary[k] for k in BUDGET if k in summary})  # counted, per trial
            rec.metrics({"val_metric": v, **summary})
            rec.tag("state", "COMPLETE")
            return v
