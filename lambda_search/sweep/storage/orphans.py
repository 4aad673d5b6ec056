"""A preempted trial handed back for retry (a stale one is failed and retried by the claim: `claim.fail_stale`)."""

from __future__ import annotations

import contextlib

import optuna

from lambda_search.names import PREEMPTED, PREEMPTED_TRIAL
from lambda_search.records import keys
from lambda_search.sweep.faults import fault_point


def hand_back(study: optuna.Study, trial_id: int) -> int | None:
    """Give a preempted trial back for retry: same λ, its retry count kept; returns the copy's number.

    Optuna has no "preempted" state, so this does what `RetryHeartbeatStaleTrialCallback`
    does for a stale trial, except that it does not count: it queues a WAITING copy
    (params, user attrs, intermediate values, ``failed_trial`` pointing to the original,
    so the copy resumes from the original's checkpoint, and `PREEMPTED_TRIAL` naming
    it) with the original's ``retry_history`` unchanged, so no ``max_retries`` slot is
    spent, then tells the original FAIL with ``fail_reason = "preempted"`` (the sampler
    ignores FAIL trials). The copy is queued first: in between, the study holds one
    trial more, never one less, so no other worker starts an extra trial; a worker
    killed in between leaves the original RUNNING beside its copy, and the next claim
    tells it FAIL instead of retrying it (`claim.fail_stale`). Does nothing (None) to
    a finished trial.
    """
    storage = study._storage
    trial = storage.get_trial(trial_id)
    if trial.state.is_finished():
        return None
    system_attrs = {keys.FAILED_TRIAL: trial.number, keys.RETRY_HISTORY: [], **trial.system_attrs,
                    PREEMPTED_TRIAL: trial.number}
    copy = optuna.create_trial(
        state=optuna.trial.TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs=trial.user_attrs, system_attrs=system_attrs, intermediate_values=trial.intermediate_values)
    copy_id = storage.create_new_trial(study._study_id, template_trial=copy)
    fault_point("hand-back")
    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        storage.set_trial_user_attr(trial_id, keys.FAIL_REASON, PREEMPTED)
        storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.FAIL)
    return storage.get_trial_number_from_id(copy_id)
