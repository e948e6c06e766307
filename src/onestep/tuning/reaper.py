"""Dead trials of a study: each running trial's heartbeat and owner, and the failing and re-queueing of a trial
whose worker is gone.

A RUNNING trial writes a heartbeat (user attr) every `tune.heartbeat_s` and its owner (host:pid). It is dead when
its owner is a process of this host that no longer exists, or when its heartbeat is older than `tune.grace_s`
(another host); a worker marks dead trials FAIL (reason in user attr `fail_reason`) and re-queues their
parameters (at most `tune.max_retry` times), so a worker killed mid-trial costs one retry. The dead trial's
MLflow run is closed as KILLED (`on_dead`, the CLI's side channel).
"""

from __future__ import annotations

import os
import socket
import threading
import time

import optuna
from optuna.trial import TrialState


def owner() -> str:
    """This process, as a trial's `owner` user attr: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _gone(who: str | None) -> bool:
    """The owner is a process of this host that no longer exists (killed, crashed)."""
    host, _, pid = (who or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def dead_reason(t: optuna.trial.FrozenTrial, grace_s: float, now: float) -> str | None:
    """Why a RUNNING trial is dead (its worker is gone), or None while it may still be alive."""
    beat = t.user_attrs.get("heartbeat", t.datetime_start.timestamp() if t.datetime_start else now)
    if _gone(t.user_attrs.get("owner")):
        return f"worker {t.user_attrs['owner']} is gone (last heartbeat {now - beat:.0f} s ago)"
    if now - beat > grace_s:
        return f"no heartbeat for {now - beat:.0f} s (worker lost)"
    return None


def reap_stale(study: optuna.Study, grace_s: float, max_retry: int, on_dead=None) -> list[int]:
    """Fail dead RUNNING trials (dead_reason) and re-queue their parameters; returns their numbers.
    `on_dead(trial, reason)` runs for each (the CLI closes the trial's MLflow run as KILLED)."""
    now, reaped = time.time(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = dead_reason(t, grace_s, now)
        if reason is None:
            continue
        retries = int(t.user_attrs.get("retries", 0))
        study._storage.set_trial_user_attr(t._trial_id, "fail_reason", reason)
        study._storage.set_trial_user_attr(t._trial_id, "requeued", retries < max_retry)
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        if retries < max_retry:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number, "retries": retries + 1},
                                skip_if_exists=False)
        if on_dead is not None:
            on_dead(t, reason)
        reaped.append(t.number)
    return reaped


class Heartbeat:
    """Writes `heartbeat = time.time()` into the trial's user attrs every `every` seconds."""

    def __init__(self, trial: optuna.Trial, every: float):
        self.trial, self.every, self.stop = trial, every, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            self.trial.set_user_attr("heartbeat", time.time())

    def __enter__(self):
        self.trial.set_user_attr("owner", owner())
        self.trial.set_user_attr("heartbeat", time.time())
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
