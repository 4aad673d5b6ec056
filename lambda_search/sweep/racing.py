"""The race inside Optuna: each of its runs is one trial, decided and claimed under the worker lock.

`lambda_search.sweep.race` decides which run comes next from the runs so far; this module
reads those runs from the storage, makes the trial the rule asks for, and hands it to the
sweep's trial machinery (heartbeat, checkpoints, stale retry and resume), which trains it
with the seed in its user attrs.

Where the runs live:

- Runs of λ > 0 are trials of the study itself, with param ``lambda`` and user attrs
  ``seed`` and ``role`` (``"search"`` or ``"verdict"``). A new λ is asked from the study's
  sampler; a repeat of a λ already raced is enqueued with its λ fixed. The sampler thus
  sees every run of a λ as one more observation of the noisy FID there: a λ raced on
  more seeds weighs more in TPE's model, as it should.
- Runs of λ = 0 are trials of the companion study ``<name>.control``, as the sweep's
  control: a log-uniform distribution cannot hold 0, and the sampler must not model
  λ = 0, which is the reference and not a candidate.

The decision (read every run, apply the rule, make the trial) happens under the study's
worker lock, so the budget ``n_trials`` counts the runs of both studies exactly, and any
number of workers run the same rule. A failed run (a worker that died) is retried before
anything new is decided: the retry keeps the run's λ, seed and role.
"""

from __future__ import annotations

import logging
import math
import time

import optuna
from optuna.trial import FrozenTrial, TrialState

from lambda_search.config import StudyConfig, config_from_dict
from lambda_search.names import CONTROL, PARAM, control_name
from lambda_search.sweep.control import open_control
from lambda_search.sweep.race import (
    Done,
    Propose,
    Repeat,
    Run,
    Verdict,
    next_run,
    verdict,
    verdict_line,
)
from lambda_search.sweep.storage import fail_stale_trials, retried_trial_number, trial_id, worker_lock
from lambda_search.sweep.trial import Worker, ask_trial, run_trial

log = logging.getLogger(__name__)


def run_race(worker: Worker) -> int:
    """Claim and train the race's runs until its budget is spent; returns the runs trained here."""
    control = open_control(worker)
    trained = 0
    while (claimed := _claim(worker, control)) is not None:
        owner, trial = claimed
        log.info("race: trial %d of %s, λ = %.6g, seed %s, %s", trial.number, owner.study.study_name,
                 trial.params[PARAM], trial.user_attrs.get("seed"), trial.user_attrs.get("role"))
        run_trial(owner, trial)
        trained += 1
    return trained


def _claim(worker: Worker, control: Worker) -> tuple[Worker, optuna.Trial] | None:
    """The next run of the race, started; None when every run is done (waiting for those running elsewhere)."""
    config = worker.config.study
    while True:
        with worker_lock(worker.storage, worker.study.study_name):
            for owner in (worker, control):
                fail_stale_trials(owner.study, owner.storage)
            for owner in (worker, control):
                if owner.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                    return owner, ask_trial(owner)  # a run whose worker died: its retry comes first
            runs = race_runs(worker.study, control.study)
            action = next_run(runs, config.n_trials, config.seed)
            if isinstance(action, Propose):
                return worker, _start(worker, None, action.seed, "search")
            if isinstance(action, Repeat):
                owner = control if action.lam == CONTROL else worker
                return owner, _start(owner, action.lam, action.seed, action.role)
        if isinstance(action, Done) and all(run.finished for run in runs):
            return None
        # Runs in progress elsewhere decide what comes next (or may die and need a retry): wait for them.
        time.sleep(worker.config.study.heartbeat_seconds)


def _start(owner: Worker, lam: float | None, seed: int, role: str) -> optuna.Trial:
    attrs = {"seed": seed, "role": role}
    if lam is not None and not owner.control:
        # A λ already in the race: fixed, not sampled. Enqueued and asked at once, under the lock.
        owner.study.enqueue_trial({PARAM: lam}, user_attrs=attrs)
    trial = ask_trial(owner)
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    return trial


def race_runs(study: optuna.Study, control: optuna.Study | None) -> list[Run]:
    """The race's runs, in the order they were first started (a retry takes its original's place).

    Failed trials are left out: each is retried as a new trial with the same λ, seed and role.
    """
    keyed: list[tuple[int, Run]] = []
    for source in (study, control):
        if source is None:
            continue
        trials = source.get_trials(deepcopy=False)
        ids = {trial.number: trial_id(trial) for trial in trials}
        for trial in trials:
            run = _run(trial, CONTROL if source is control else None)
            if run is not None:
                origin = retried_trial_number(trial)
                keyed.append((ids.get(origin, trial_id(trial)) if origin is not None else trial_id(trial), run))
    return [run for _, run in sorted(keyed, key=lambda pair: pair[0])]


def _run(trial: FrozenTrial, lam: float | None) -> Run | None:
    if "role" not in trial.user_attrs or trial.state == TrialState.FAIL:
        return None
    fid: float | None = None
    if trial.state == TrialState.COMPLETE:
        fid = trial.value if trial.value is not None and math.isfinite(trial.value) else math.inf
    elif trial.state == TrialState.PRUNED:
        fid = math.inf  # diverged: a loss
    return Run(float(trial.params[PARAM]) if lam is None else lam, int(trial.user_attrs["seed"]),
               trial.user_attrs["role"], fid)


def is_race(study: optuna.Study) -> bool:
    """Whether the study was made by a race (its stored config says strategy = "race")."""
    config = study.user_attrs.get("config", {})
    return bool(config.get("study", {}).get("strategy") == "race")


def load_race(study: optuna.Study) -> tuple[StudyConfig, list[Run]]:
    """A race study's config and runs, from the study and its ``<name>.control``."""
    config = config_from_dict(study.user_attrs["config"])
    name = control_name(study.study_name)
    control = (optuna.load_study(study_name=name, storage=study._storage)
               if name in optuna.get_all_study_names(study._storage) else None)
    return config, race_runs(study, control)


def race_verdict(study: optuna.Study) -> Verdict | None:
    """The race's verdict; None until its verdict runs are all finished."""
    config, runs = load_race(study)
    return verdict(runs, config.study.n_trials, config.study.seed)


def race_verdict_line(study: optuna.Study) -> str:
    return verdict_line(race_verdict(study))
