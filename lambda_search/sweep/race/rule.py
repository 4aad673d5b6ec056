"""The race: which training run to do next, decided from the runs so far. Pure: no torch, no Optuna.

A GAN's FID moves between seeds about as much as between neighbouring λ, so a sweep's best
single run mostly ranks luck. The race separates the two things a sweep conflates, choosing
a λ and judging it, and spends its budget where `bench/race.py` measured it pays:

Search phase (``role = "search"``), every run on the one search seed, the study's `seed`:

- λ = 0 runs once, then each run is a new λ from the study's sampler.
- One shared seed pairs every comparison for free. The seed's effect, which moves every λ
  of a seed alike (sd 7.2 FID in the finding, against 4.9 FID of noise per run), cancels
  from each difference between λ, as in SMAC's and irace's races on shared instances.
- The *incumbent* is the λ tried with the lowest FID on a Gaussian-process curve fitted to
  the search runs (`metrics.curve`): it borrows strength from neighbouring λ to average
  each run's own noise away. Re-training a λ on more seeds, as SMAC's intensification does,
  was measured and lost: a repeat on a new seed costs two runs (the λ and its paired
  λ = 0) for one observation, while a new λ costs one. At no budget or curve width simulated
  did re-training the incumbent lower the regret (bench/RESULTS.md, strategy (d)).
- A diverged run counts as a loss: the worst finite FID of the search in the fit.

Verdict phase (``role = "verdict"``): when the search runs number ``n_trials`` minus the
verdict's runs, and none is still running, the incumbent is final. It and λ = 0 then run
on `verdict_seeds` fresh seeds, ``seed + VERDICT_SEED_OFFSET + i``, never used in the
search, so the selection cannot flatter the winner. The one pre-registered comparison is
the paired difference incumbent − λ = 0 on those seeds: its Student-t interval decides
("beyond noise" only when it excludes 0), and the exact Wilcoxon signed-rank p is shown
beside it (with 3 seeds it cannot fall below 0.25, so it cannot decide). One comparison:
no multiple-comparison correction is owed.

Budget: the verdict takes ``[study] verdict_seeds`` fresh seeds, two runs each, when the
study file gives it (`lambda-search plan` sizes it for power), else a quarter of ``n_trials``
(at least 3 seeds); the search takes the rest.

Workers: every search run after λ = 0's is a new λ, so N workers never wait on each other
until the verdict, which waits for the last search run. Deterministic: the same runs in
the same order give the same next run.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from lambda_search.metrics.curve import Curve, fit_curve
from lambda_search.metrics.stats import (
    Interval,
    beyond_noise,
    detectable_clause,
    differences,
    judge,
    stand_in,
    wilcoxon_p_value,
    worst_finished,
)
from lambda_search.names import CONTROL, MIN_VERDICT_SEEDS

SEARCH: Final = "search"
VERDICT: Final = "verdict"
Role = Literal["search", "verdict"]
# Verdict seeds start this far above the study seed: far beyond any search seed.
VERDICT_SEED_OFFSET = 10_000
# The share of n_trials the verdict gets (its floor in fresh seeds is `names.MIN_VERDICT_SEEDS`).
VERDICT_SHARE = 0.25


@dataclass(frozen=True)
class Run:
    """One training run of the race: finished (`fid` set, ``math.inf`` if it diverged) or in progress (None)."""

    lam: float
    seed: int
    role: Role
    fid: float | None = None

    @property
    def finished(self) -> bool:
        return self.fid is not None


@dataclass(frozen=True)
class Propose:
    """Train a new λ from the sampler on `seed`."""

    seed: int


@dataclass(frozen=True)
class Repeat:
    """Train a λ already in the race (or λ = 0) on `seed`."""

    lam: float
    seed: int
    role: Role


@dataclass(frozen=True)
class Wait:
    """Nothing can be decided until the runs in progress finish."""


@dataclass(frozen=True)
class Done:
    """Every run of the budget exists (some may still be in progress)."""


Action = Propose | Repeat | Wait | Done


def verdict_seed_count(n_trials: int, requested_seeds: int = 0) -> int:
    """Fresh seeds of the verdict, two runs each: the study's ``[study] verdict_seeds`` (`requested_seeds`)
    when given (not 0), else a quarter of the budget, at least 3."""
    return requested_seeds or max(MIN_VERDICT_SEEDS, round(VERDICT_SHARE * n_trials / 2))


def search_budget(n_trials: int, requested_seeds: int = 0) -> int:
    """Runs of the search phase: what the verdict leaves."""
    return n_trials - 2 * verdict_seed_count(n_trials, requested_seeds)


def verdict_seeds(seed: int, n_trials: int, requested_seeds: int = 0) -> list[int]:
    """The verdict's fresh seeds: far above the search seed `seed`, never used by the search."""
    return [seed + VERDICT_SEED_OFFSET + index for index in range(verdict_seed_count(n_trials, requested_seeds))]


@dataclass(frozen=True)
class Standing:
    """The search so far: its finished runs of λ > 0, λ = 0's FID, the curve fitted to them, and the incumbent."""

    # (λ, FID) of each finished search run of λ > 0, in the order started; a diverged run's FID is math.inf.
    runs: list[tuple[float, float]]
    control_fid: float | None
    curve: Curve | None
    incumbent: float | None


def standing(runs: Sequence[Run]) -> Standing:
    """The curve through the finished search runs, and the λ tried that it scores lowest."""
    search = [run for run in runs if run.role == SEARCH and run.fid is not None]
    tried = [(run.lam, run.fid) for run in search if run.lam != CONTROL and run.fid is not None]
    control = next((run.fid for run in search if run.lam == CONTROL), None)
    if not tried:
        return Standing([], control, None, None)
    worst = _worst(search)  # the search's own: the choice never looks at the verdict's runs
    curve = fit_curve([lam for lam, _ in tried], stand_in([fid for _, fid in tried], worst))
    return Standing(tried, control, curve, curve.best())


def next_run(runs: Sequence[Run], n_trials: int, seed: int, requested_seeds: int = 0) -> Action:
    """The next run of a race of `n_trials` runs whose search seed is `seed`.

    Args:
        runs: every run made so far (finished or in progress, failed ones left out),
            in the order they were started.
        requested_seeds: the study's ``[study] verdict_seeds`` (0: a quarter of `n_trials`).
    """
    search = [run for run in runs if run.role == SEARCH]
    if len(search) < search_budget(n_trials, requested_seeds):
        if not any(run.lam == CONTROL for run in search):
            return Repeat(CONTROL, seed, SEARCH)
        return Propose(seed)
    if any(not run.finished for run in search):
        return Wait()
    final = chosen(runs)
    if final is None:
        return Wait()  # unreachable with a budget of at least MIN_RUNS: every search run finished
    present = {(run.lam, run.seed) for run in runs if run.role == VERDICT}
    for fresh in verdict_seeds(seed, n_trials, requested_seeds):
        for lam in (final, CONTROL):
            if (lam, fresh) not in present:
                return Repeat(lam, fresh, VERDICT)
    return Done()


def chosen(runs: Sequence[Run]) -> float | None:
    """The λ the verdict judges: the one its runs already train, else the search's incumbent."""
    judged = next((run.lam for run in runs if run.role == VERDICT and run.lam != CONTROL), None)
    return judged if judged is not None else standing(runs).incumbent


@dataclass(frozen=True)
class Verdict:
    """The pre-registered comparison: the incumbent against λ = 0 on the fresh verdict seeds."""

    lam: float
    mean_fid: float
    control_mean_fid: float
    # incumbent − λ = 0, seed by seed, with its 95% t interval: negative means the incumbent scores lower (better).
    interval: Interval
    wilcoxon_p: float
    # The smallest |difference| the rule detects with 80% power at the sd of these seeds' differences.
    detectable: float
    verdict_seeds: list[int]
    # Each verdict seed's FID (a diverged run as the study's worst FID), for the incumbent and λ = 0.
    fids: list[float]
    control_fids: list[float]

    @property
    def difference(self) -> float:
        return self.interval.mean

    @property
    def seeds(self) -> int:
        return len(self.verdict_seeds)

    @property
    def beyond_noise(self) -> bool:
        return beyond_noise(self.interval)


def verdict(runs: Sequence[Run], n_trials: int, seed: int, requested_seeds: int = 0) -> Verdict | None:
    """The verdict from the finished verdict runs; None until every one of them is finished."""
    lam = chosen(runs)
    fids = {(run.lam, run.seed): run.fid for run in runs if run.role == VERDICT and run.fid is not None}
    fresh = verdict_seeds(seed, n_trials, requested_seeds)
    if lam is None or any((each, s) not in fids for s in fresh for each in (lam, CONTROL)):
        return None
    worst = _worst(runs)

    def scored(each: float) -> list[float]:
        return stand_in([fids[each, s] for s in fresh], worst)

    candidate, control = scored(lam), scored(CONTROL)
    paired = differences(candidate, control)
    interval, detectable = judge(paired)
    return Verdict(lam, statistics.fmean(candidate), statistics.fmean(control), interval, wilcoxon_p_value(paired),
                   detectable, fresh, candidate, control)


def verdict_line(result: Verdict | None) -> str:
    """One line: the λ, its mean FID, the difference to λ = 0 with its interval, and the effect detectable.

    Or why there is no verdict yet.
    """
    if result is None:
        return "race verdict: not yet (the verdict runs on fresh seeds are not all finished)"
    head = (f"race verdict: λ = {result.lam:.6g}, mean FID {result.mean_fid:.4f} on {result.seeds} fresh seeds; "
            f"minus λ = 0: {result.difference:+.4f} FID (95% CI [{result.interval.low:.4f}, "
            f"{result.interval.high:.4f}], Wilcoxon p = {result.wilcoxon_p:.3g})")
    power = detectable_clause(result.detectable)
    if not result.beyond_noise:
        return f"{head}: no effect detectable with this budget ({power})"
    better = "lower" if result.difference < 0 else "higher"
    return f"{head}: {better} than λ = 0 beyond noise ({power})"


@dataclass(frozen=True)
class RaceSummary:
    """What a report shows of a race: the search runs, the fitted curve, the incumbent's path, the verdict."""

    search_seed: int
    # (λ, FID, fitted FID, its sd) for each finished search run of λ > 0, in the order started.
    runs: list[tuple[float, float, float, float]]
    control_fid: float | None
    # The fitted curve at CURVE_POINTS λ spread log-uniformly over the searched range: (λ, mean, sd).
    curve: list[tuple[float, float, float]]
    # The incumbent after each finished search run, repeats left out: the λ the race held, in turn.
    path: list[float]
    verdict: Verdict | None
    verdict_text: str


CURVE_POINTS = 120


def summarize(runs: Sequence[Run], n_trials: int, seed: int, lambda_low: float, lambda_high: float,
              requested_seeds: int = 0) -> RaceSummary:
    """The race so far, for a report of the range [lambda_low, lambda_high]."""
    state = standing(runs)
    fitted = state.curve.predict([lam for lam, _ in state.runs]) if state.curve is not None else []
    searched = [(lam, fid, mean, sd) for (lam, fid), (mean, sd) in zip(state.runs, fitted, strict=True)]
    grid = [lambda_low * (lambda_high / lambda_low) ** (i / (CURVE_POINTS - 1)) for i in range(CURVE_POINTS)]
    curve = ([(lam, mean, sd) for lam, (mean, sd) in zip(grid, state.curve.predict(grid), strict=True)]
             if state.curve is not None and state.curve.model is not None else [])
    path: list[float] = []
    for index, run in enumerate(runs):
        if run.role != SEARCH or run.fid is None or run.lam == CONTROL:
            continue
        incumbent = standing(runs[:index + 1]).incumbent
        if incumbent is not None and (not path or path[-1] != incumbent):
            path.append(incumbent)
    result = verdict(runs, n_trials, seed, requested_seeds)
    return RaceSummary(seed, searched, state.control_fid, curve, path, result, verdict_line(result))


def _worst(runs: Sequence[Run]) -> float:
    """What a diverged run counts as (`stats.worst_finished`): the worst finite FID of `runs`, 0 if none finished."""
    return worst_finished([run.fid for run in runs if run.fid is not None], default=0.0)
