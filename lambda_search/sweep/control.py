"""The λ = 0 control: the sweep's training once more without weight decay, outside the sampler.

A best λ means little until it is compared with no decay at all. With ``[search]
control = true`` (the default) every study also trains λ = 0 once, with the study
seed, the same training loop, steps, FID protocol and fixed noise as its trials.

Design: the control is the one trial of the companion study ``<name>.control`` in
the same storage (as `confirm` keeps ``<name>.confirm``). Living in another study,
it never enters the sweep sampler's model, and the sweep's `n_trials` counts only
the sweep. Workers claim it through the sweep's own machinery (`trial.claim_trials`
with a target of one: under the worker lock, stale trials failed and retried), so
many workers train it exactly once, and a killed worker's control is retried from
its checkpoint. It carries the user attributes and artifacts of any trial.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings

import optuna
from optuna.trial import FrozenTrial, TrialState

from lambda_search.sweep.storage import worker_lock
from lambda_search.sweep.trial import PARAM, Worker, claim_trials, run_trial

log = logging.getLogger(__name__)

CONTROL = 0.0
# The single run of λ = 0 is one seed, as is each sweep trial: a difference is a hint, not a verdict.
UNCONFIRMED = "one training run each, unconfirmed: `lambda-search confirm` re-trains both with several seeds"


def control_name(study_name: str) -> str:
    return f"{study_name}.control"


def open_control(worker: Worker) -> Worker:
    """The worker's view of the control study: the same data, scorer, noise, config and artifact store."""
    config = worker.config
    name = control_name(config.study.name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # Only λ = 0, whatever is asked; the random base sampler is never consulted for it.
        sampler = optuna.samplers.PartialFixedSampler({PARAM: CONTROL}, optuna.samplers.RandomSampler())
    with worker_lock(worker.storage, name):
        study = optuna.create_study(study_name=name, storage=worker.storage, direction="minimize",
                                    sampler=sampler, pruner=optuna.pruners.NopPruner(), load_if_exists=True)
        if "control_of" not in study.user_attrs:
            study.set_user_attr("control_of", config.study.name)
            study.set_user_attr("fid_protocol", worker.scorer.protocol.to_dict())
            study.set_user_attr("config", config.to_dict())
    return dataclasses.replace(worker, study=study, control=True)


def run_control(control: Worker, wait: bool) -> int:
    """Train the control unless it is done or (with `wait` False) running elsewhere; returns runs trained here."""
    trained = 0
    while claimed := claim_trials(control, 1, wait=wait):
        log.info("training the λ = 0 control (study %s)", control.study.study_name)
        run_trial(control, claimed[0])
        trained += 1
    return trained


def load_control(study: optuna.Study) -> FrozenTrial | None:
    """The control run of a sweep study, from ``<name>.control`` in its storage.

    The COMPLETE run; else a PRUNED one (it diverged); else one running or waiting
    for a retry; else (no companion study, or only failed runs) None.
    """
    name = control_name(study.study_name)
    if name not in optuna.get_all_study_names(study._storage):
        return None
    trials = optuna.load_study(study_name=name, storage=study._storage).get_trials(deepcopy=False)
    for states in ((TrialState.COMPLETE,), (TrialState.PRUNED,), (TrialState.RUNNING, TrialState.WAITING)):
        found = [trial for trial in trials if trial.state in states]
        if found:
            return found[-1]
    return None


def control_fid(control: FrozenTrial | None) -> float | None:
    """The control's FID: None unless it completed with a finite value."""
    if control is None or control.state != TrialState.COMPLETE or control.value is None:
        return None
    return control.value if math.isfinite(control.value) else None


def comparison(best_fid: float | None, control: FrozenTrial | None) -> str:
    """One sentence: the control's FID, and whether the best λ beats it and by how much."""
    if control is None:
        return "No λ = 0 control ([search] control = false, or the study predates it)"
    fid = control_fid(control)
    if fid is None:
        if control.state == TrialState.PRUNED:
            reason = control.user_attrs.get("prune_reason", "pruned")
            return f"The λ = 0 control did not finish ({reason}): no FID to compare"
        return f"The λ = 0 control is {control.state.name.lower()}: no FID yet"
    if best_fid is None:
        return f"λ = 0 control: FID {fid:.4f}; no λ completed yet"
    gain = fid - best_fid
    if gain > 0:
        return f"The best λ beats the λ = 0 control (FID {fid:.4f}) by {gain:.4f} FID; {UNCONFIRMED}"
    if gain == 0:
        return f"The best λ ties with the λ = 0 control (FID {fid:.4f}); {UNCONFIRMED}"
    return f"The best λ does not beat the λ = 0 control (FID {fid:.4f}): it is {-gain:.4f} FID worse; {UNCONFIRMED}"
