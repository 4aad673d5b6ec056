"""A study's trials read back: its stored config, what "finished" means, its best trial, control run and judged KID.

Pure reads of an open study (Optuna's public API only): the sweep, the race, `status`,
the report and the export all decide through here. No torch.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any, NamedTuple

import optuna
from optuna.trial import FrozenTrial, TrialState

from lambda_search.config import StudyConfig, config_from_dict
from lambda_search.errors import NoResultError
from lambda_search.names import EMA_GENERATOR, FID, FID_EMA, JUDGED_GENERATOR, LIVE_GENERATOR
from lambda_search.records import keys

# A trial in these states is done and counts toward `n_trials`.
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# The single run of λ = 0 is one seed, as is each sweep trial: a difference is a hint, not a verdict.
UNCONFIRMED = ("one training run each, unconfirmed: a single seed cannot separate such a difference from noise; "
               "`lambda-search confirm` re-trains both with several seeds")


def stored_config(attrs: dict[str, Any], owner: str) -> StudyConfig:
    """The resolved config a study (or trial) stored in its ``config`` user attr.

    Raises:
        NoResultError: `owner` holds no config (it was not made by lambda-search).
    """
    if keys.CONFIG not in attrs:
        raise NoResultError(f"{owner} holds no lambda-search config; was it made by `lambda-search run`?")
    return config_from_dict(attrs[keys.CONFIG])


def protocol_differences(stored: dict[str, Any], here: dict[str, Any]) -> list[str]:
    """The fields on which two FID protocols differ (one a field lacks differs), sorted; empty: their FIDs compare.

    The one compatibility check of FID protocols: joining a study, `confirm`, `train` and `report --compare`.
    """
    return sorted(key for key in {*stored, *here} if stored.get(key) != here.get(key))


def protocol_fields(protocol: dict[str, Any], fields: list[str]) -> str:
    """`fields` of `protocol` as ``field=value, …`` (a missing field as None): what an error names."""
    return ", ".join(f"{field}={protocol.get(field)}" for field in fields)


def study_config(study: optuna.Study) -> StudyConfig:
    """The config the study was created with (see `stored_config`)."""
    return stored_config(study.user_attrs, f"study {study.study_name!r}")


def objective_note(config: StudyConfig) -> str:
    """Which FID a study's values are, said where it is not the default live one; empty for `objective = "fid"`."""
    if config.study.objective != FID_EMA:
        return ""
    return (f"every FID of this study is the EMA generator's ({FID_EMA}, decay {config.train.ema:g}, BatchNorm "
            f"statistics recomputed); the live generator's is stored beside it as user attr {FID!r}")


def judged_generator(config: StudyConfig) -> str:
    """The generator a study's `[study] objective` judges: `names.LIVE_GENERATOR` or `names.EMA_GENERATOR`."""
    return JUDGED_GENERATOR[config.study.objective]


class TrialKid(NamedTuple):
    """A trial's final KID, its sd over subsets, and which generator it is of (`names.GENERATOR_NAMES`)."""

    value: float
    std: float | None
    generator: str


def judged_kid(attrs: dict[str, Any], objective: str) -> TrialKid | None:
    """The KID of the generator `objective` judges (`names.JUDGED_GENERATOR`), from a trial's user attrs.

    A trial of an EMA-judged study stored before the EMA KID existed holds the live generator's
    KID only: that one is returned, as the live generator's. None: the trial stored no KID.
    """
    if JUDGED_GENERATOR[objective] == EMA_GENERATOR and keys.KID_EMA in attrs:
        return TrialKid(attrs[keys.KID_EMA], attrs.get(keys.KID_EMA_STD), EMA_GENERATOR)
    if keys.KID in attrs:
        return TrialKid(attrs[keys.KID], attrs.get(keys.KID_STD), LIVE_GENERATOR)
    return None


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE and PRUNED trials, in trial order.

    Raises:
        NoResultError: there is none yet.
    """
    trials = study.get_trials(deepcopy=False, states=FINISHED)
    if not trials:
        raise NoResultError(
            f"study {study.study_name!r} has no finished trial yet; run `lambda-search run` first"
        )
    return trials


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The COMPLETE trial with the lowest FID, or None when no trial completed."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return min(complete, key=lambda trial: math.inf if trial.value is None else trial.value, default=None)


def parse_curves(data: bytes) -> list[dict[str, float | None]]:
    """Rows of a curves CSV (see `names.CURVE_COLUMNS`); blank cells become None."""
    reader = csv.DictReader(io.StringIO(data.decode()))
    return [{key: float(value) if value else None for key, value in row.items()} for row in reader]


def control_run(control: optuna.Study | None) -> FrozenTrial | None:
    """The control run held by a sweep's ``<name>.control`` companion (None: no companion yet).

    The COMPLETE run; else a PRUNED one (it diverged); else one running or waiting
    for a retry; else (no companion study, or only failed runs) None.
    """
    if control is None:
        return None
    trials = control.get_trials(deepcopy=False)
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
    """One sentence: the control's FID and the best λ's difference to it, never called a win: one seed each."""
    if control is None:
        return "No λ = 0 control ([search] control = false, or the study predates it)"
    fid = control_fid(control)
    if fid is None:
        if control.state == TrialState.PRUNED:
            reason = control.user_attrs.get(keys.PRUNE_REASON, "pruned")
            return f"The λ = 0 control did not finish ({reason}): no FID to compare"
        return f"The λ = 0 control is {control.state.name.lower()}: no FID yet"
    if best_fid is None:
        return f"λ = 0 control: FID {fid:.4f}; no λ completed yet"
    gain = fid - best_fid
    if gain == 0:
        return f"The best λ scored the same FID as the λ = 0 control (FID {fid:.4f}); {UNCONFIRMED}"
    side = "lower" if gain > 0 else "higher"
    return f"The best λ scored {abs(gain):.4f} FID {side} than the λ = 0 control (FID {fid:.4f}); {UNCONFIRMED}"
