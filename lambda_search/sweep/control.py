"""The λ = 0 control: the sweep's training once more without weight decay, outside the sampler.

A best λ means little until it is compared with no decay at all. With ``[search]
control = true`` (the default) every study also trains λ = 0 once, with the study
seed, the same training loop, steps, FID protocol and fixed noise as its trials.

Design: the control is the one trial of the companion study ``<name>.control`` in
the same storage (as `confirm` keeps ``<name>.confirm``). Living in another study,
it never enters the sweep sampler's model, and the sweep's `n_trials` counts only
the sweep. It is the worker's second target (`control_target`: one trial at λ = 0, its
own checkpoint folder), claimed through the sweep's own machinery (`trial.claim_trials`:
under the worker lock, stale trials failed and retried), so many workers train it
exactly once, and a killed worker's control is retried from its checkpoint. It carries
the user attributes and artifacts of any trial. Reading it back (`load_control`,
`comparison`) is `sweep.companions` and `records.trials`.
"""

from __future__ import annotations

import logging
import warnings

import optuna

from lambda_search.names import CONTROL, MODEL, PARAM, control_name
from lambda_search.records import keys
from lambda_search.sweep.objective import create_study, distribution_with_zero
from lambda_search.sweep.storage import worker_lock
from lambda_search.sweep.trial import Target, Worker, claim_trials, run_trial

log = logging.getLogger(__name__)

def control_target(worker: Worker) -> Target:
    """The control's target: the one trial of ``<name>.control`` at λ = 0, checkpointed in its own folder."""
    config = worker.config
    name = control_name(config.study.name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # Only λ = 0, whatever is asked; the random base sampler is never consulted for it.
        sampler = optuna.samplers.PartialFixedSampler({PARAM: CONTROL}, optuna.samplers.RandomSampler())
    with worker_lock(worker.storage, name):
        study = create_study(name, worker.storage, config.study.objective, sampler=sampler,
                             pruner=optuna.pruners.NopPruner())
        if keys.CONTROL_OF not in study.user_attrs:
            study.set_user_attr(keys.CONTROL_OF, config.study.name)
            study.set_user_attr(keys.FID_PROTOCOL, worker.scorer.protocol.to_dict())
            study.set_user_attr(keys.CONFIG, config.to_dict())
            study.set_user_attr(MODEL, worker.model.identity)
    return Target(study, 1, distribution_with_zero(config.search.lambda_high), worker.artifact_dir / "control")


def run_control(worker: Worker, control: Target, wait: bool) -> int:
    """Train the control unless it is done or (with `wait` False) running elsewhere; returns runs trained here."""
    trained = 0
    while claimed := claim_trials(worker, control, 1, wait=wait):
        log.info("training the λ = 0 control (study %s)", control.study.study_name)
        run_trial(worker, control, claimed[0])
        trained += 1
    return trained
