"""A confirmation read back: the paired runs of ``<name>.confirm`` as intervals and a verdict.

`sweep.confirm` trains and stores the runs; this module only reads and summarizes
them, so the report and the export show a confirmation without torch.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from lambda_search.errors import NoResultError
from lambda_search.metrics.stats import Interval, excludes_zero, mean_interval, paired_difference
from lambda_search.names import CONTROL, PARAM, confirm_name
from lambda_search.sweep.storage import open_storage


class LambdaResult(NamedTuple):
    """One λ of a confirmation: its FID per seed, their mean and interval, and the paired difference to λ = 0."""

    lam: float
    fids: dict[int, float]
    interval: Interval
    # None for the control itself, or when no seed finished both at this λ and at λ = 0.
    difference: Interval | None


class Confirmation(NamedTuple):
    study: str
    seeds: list[int]
    control: LambdaResult
    # The swept λ values, best mean FID first.
    candidates: list[LambdaResult]

    @property
    def best(self) -> LambdaResult:
        """The λ with the lowest mean FID, the control included."""
        return min([self.control, *self.candidates], key=lambda result: result.interval.mean)


def stored_fids(trials: list[FrozenTrial]) -> dict[tuple[float, int], float]:
    """(λ, seed) → FID of the runs already stored; NaN for one that diverged (FAIL with a seed)."""
    stored: dict[tuple[float, int], float] = {}
    for trial in trials:
        if PARAM not in trial.params or "seed" not in trial.user_attrs:
            continue
        key = (float(trial.params[PARAM]), int(trial.user_attrs["seed"]))
        if trial.state == TrialState.COMPLETE and trial.value is not None:
            stored[key] = trial.value
        elif trial.state == TrialState.FAIL and "diverged" in trial.user_attrs:
            stored[key] = math.nan
    return stored


def load_confirmation(storage: str | BaseStorage, study_name: str) -> Confirmation | None:
    """The confirmation of `study_name` from the runs stored in ``<name>.confirm``, training nothing.

    Args:
        storage: a storage URL, or the storage of an open study.

    Returns:
        None when there is no companion study, or it holds no finished run of λ = 0.
    """
    if isinstance(storage, str):
        storage = open_storage(storage)
    if confirm_name(study_name) not in optuna.get_all_study_names(storage):
        return None
    companion = optuna.load_study(study_name=confirm_name(study_name), storage=storage)
    fids = stored_fids(companion.get_trials(deepcopy=False))
    if not any(lam == CONTROL and math.isfinite(fid) for (lam, _), fid in fids.items()):
        return None
    lams = sorted({lam for lam, _ in fids})
    seeds = sorted({seed for _, seed in fids})
    return summarize(study_name, lams, seeds, fids)


def summarize(study_name: str, lams: list[float], seeds: list[int],
              fids: dict[tuple[float, int], float]) -> Confirmation:
    """Intervals from the runs' FIDs (NaN for a diverged run, which is left out of the statistics)."""
    finished = {lam: {seed: fids[lam, seed] for seed in seeds
                      if (lam, seed) in fids and math.isfinite(fids[lam, seed])} for lam in lams}
    for lam, by_seed in finished.items():
        if not by_seed:
            raise NoResultError(f"λ = {lam:.6g}: every confirmation run diverged; no FID to compare")
    control = finished[CONTROL]

    def result(lam: float) -> LambdaResult:
        by_seed = finished[lam]
        paired = [seed for seed in seeds if seed in by_seed and seed in control]
        difference = (paired_difference([by_seed[s] for s in paired], [control[s] for s in paired])
                      if lam != CONTROL and paired else None)
        return LambdaResult(lam, by_seed, mean_interval(list(by_seed.values())), difference)

    candidates = sorted((result(lam) for lam in lams if lam != CONTROL), key=lambda r: r.interval.mean)
    return Confirmation(study_name, seeds, result(CONTROL), candidates)


def verdict(confirmation: Confirmation) -> str:
    """One line: which λ is best, by how much, and whether it beats λ = 0 beyond noise."""
    best = confirmation.best
    n = len(confirmation.seeds)
    if best.lam == CONTROL:
        return (f"no λ beats λ = 0 on average over {n} seed(s): the control has the lowest mean FID "
                f"({best.interval.mean:.4f}); weight decay does not help here")
    difference = best.difference
    if difference is None:
        return f"λ = {best.lam:.6g} has the lowest mean FID, but no seed finished both it and λ = 0: no comparison"
    gain = -difference.mean
    if excludes_zero(difference):
        return (f"λ = {best.lam:.6g} is best: FID {gain:.4f} lower than λ = 0 (95% CI of the difference "
                f"[{difference.low:.4f}, {difference.high:.4f}], {difference.n} paired seeds), beyond noise")
    return (f"λ = {best.lam:.6g} is best: FID {gain:.4f} lower than λ = 0 on average, but the 95% CI of the "
            f"difference [{difference.low:.4f}, {difference.high:.4f}] holds 0 ({difference.n} paired seeds): "
            f"within noise")
