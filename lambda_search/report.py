"""Study results as data (small NamedTuples) and, from them, tables and figures."""

from __future__ import annotations

from typing import NamedTuple

import optuna

from lambda_search.study import PARAM


class TrialRow(NamedTuple):
    number: int
    state: str
    lam: float | None
    fid: float | None
    steps: int | None
    seconds: float | None


def trial_table(study: optuna.Study) -> list[TrialRow]:
    """One row per trial, in trial order (FID of a pruned trial: its last reported value)."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        fid = trial.value
        if fid is None and trial.intermediate_values and trial.state == optuna.trial.TrialState.PRUNED:
            fid = trial.intermediate_values[max(trial.intermediate_values)]
        seconds = trial.duration.total_seconds() if trial.duration else None
        rows.append(TrialRow(trial.number, trial.state.name, trial.params.get(PARAM), fid,
                             trial.user_attrs.get("steps"), seconds))
    return rows
