"""A study's worker: run trials against the shared study until its budget of trials has finished.

`tune.defaults_first`: worker 0 enqueues the config's own values as the first trial (the default is one of the
study's trials, so a tuned value is never one that did worse on validation than the default). A worker does not
leave while another worker's trial is RUNNING: it waits (checking every heartbeat) until that trial finishes or
is found dead (onestep.tuning.reaper), then runs the retry; so a study recovers a killed worker's trial within
the same invocation, however soon the worker is restarted.
"""

from __future__ import annotations

import time
from pathlib import Path

from onestep.training.loop import DivergenceError
from onestep.tuning.objective import Objective
from onestep.tuning.reaper import reap_stale
from onestep.tuning.space import default_params
from onestep.tuning.study import FINISHED, budget_used, load_study, unfinished, waiting


def run_worker(cfg: dict, folder: str | Path, worker: int, objective: Objective, on_dead=None) -> dict:
    """Run trials against the shared study until `tune.n_trials` have finished (complete, pruned or failed)
    and no trial is left RUNNING or WAITING; dead trials are re-queued and retried (reap_stale)."""
    tc = cfg["tune"]
    study = load_study(cfg, folder, worker)
    reap = lambda: reap_stale(study, tc["grace_s"], tc["max_retry"], on_dead)  # noqa: E731
    reaped, ran, waited = reap(), 0, 0.0
    if tc.get("defaults_first") and worker == 0 and not any(t.user_attrs.get("default")
                                                            for t in study.get_trials(deepcopy=False)):
        study.enqueue_trial(default_params(cfg), user_attrs={"default": True})  # counts as one of n_trials
    # Two workers that check at the same moment can overshoot n_trials by at most (workers - 1).
    while True:
        if budget_used(study) < tc["n_trials"] or waiting(study):
            study.optimize(objective, n_trials=1, catch=(DivergenceError,))
            ran += 1
        elif unfinished(study):  # another worker's trial: wait until it finishes or is found dead
            time.sleep(tc["heartbeat_s"])
            waited += tc["heartbeat_s"]
        else:
            break
        reaped += reap()  # live workers also pick up dead trials
    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    return {"study": study.study_name, "worker": worker, "trials_run": ran, "finished_trials": finished,
            "reaped": reaped, "waited_s": waited}
