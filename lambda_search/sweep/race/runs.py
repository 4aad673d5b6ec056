"""A race's runs read back from the storage: its config, runs, verdict and summary. No torch.

`status`, `export` and the report read races through here; `race.driver` decides each
next run from the same `race_runs`.
"""

from __future__ import annotations

import math

import optuna
from optuna.trial import FrozenTrial, TrialState

from lambda_search.config import StudyConfig, config_from_dict
from lambda_search.names import CONTROL, PARAM
from lambda_search.records import keys
from lambda_search.sweep.companions import control_study
from lambda_search.sweep.race.rule import RaceSummary, Run, Verdict, summarize, verdict, verdict_line
from lambda_search.sweep.storage import retried_trial_number, trial_id


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
    if keys.ROLE not in trial.user_attrs or trial.state == TrialState.FAIL:
        return None
    fid: float | None = None
    if trial.state == TrialState.COMPLETE:
        fid = trial.value if trial.value is not None and math.isfinite(trial.value) else math.inf
    elif trial.state == TrialState.PRUNED:
        fid = math.inf  # diverged: a loss
    if lam is None:
        # A proposed run is claimed first and given its λ by the sampler right after (`race.claim`):
        # until then its λ is unknown, and it still counts as a search run in progress.
        lam = float(trial.params.get(PARAM, math.nan))
    return Run(lam, int(trial.user_attrs[keys.SEED]), trial.user_attrs[keys.ROLE], fid)


def is_race(study: optuna.Study) -> bool:
    """Whether the study was made by a race (its stored config says strategy = "race")."""
    config = study.user_attrs.get(keys.CONFIG, {})
    return bool(config.get("study", {}).get("strategy") == "race")


def load_race(study: optuna.Study) -> tuple[StudyConfig, list[Run]]:
    """A race study's config and runs, from the study and its ``<name>.control``."""
    return config_from_dict(study.user_attrs[keys.CONFIG]), race_runs(study, control_study(study))


def race_verdict(study: optuna.Study) -> Verdict | None:
    """The race's verdict; None until its verdict runs are all finished."""
    config, runs = load_race(study)
    return verdict(runs, config.study.n_trials, config.study.seed, config.study.verdict_seeds)


def race_verdict_line(study: optuna.Study) -> str:
    return verdict_line(race_verdict(study))


def race_summary(study: optuna.Study) -> RaceSummary:
    """The search runs, the curve fitted to them, the incumbent's path and the verdict."""
    config, runs = load_race(study)
    return summarize(runs, config.study.n_trials, config.study.seed, config.search.lambda_low,
                     config.search.lambda_high, config.study.verdict_seeds)
