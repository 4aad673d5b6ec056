"""A confirmation read back: the paired runs of ``<name>.confirm`` as means, tests against λ = 0 and a verdict.

`sweep.confirm` trains and stores the runs; this module only summarizes them
(`results.confirmation.load_confirmation` reads them back), so the report and the export
show a confirmation without torch.

The confirmation seeds are ``study.seed + 1 … study.seed + n``: never the study seed,
with which every sweep trial ran and so the top λ were chosen (a λ picked for doing
well on that seed would carry its luck into the test: selection bias). A confirmation
stored before this rule holds runs with the study seed: they are left out, and
`Confirmation.ignored` counts them.

Each λ is tested against λ = 0 with `metrics.stats.paired_tests`, by the rule the race's
verdict uses (`metrics.stats.beyond_noise`: the paired t interval at 1 − α/m excludes 0,
m the λ tested), the exact Wilcoxon p shown beside it. A run that diverged counts as a
loss for its λ, not as a missing value.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from optuna.trial import FrozenTrial, TrialState

from lambda_search.errors import ConfigError
from lambda_search.metrics.stats import (
    DIVERGED,
    Interval,
    PairedTest,
    detectable_clause,
    mean_interval,
    paired_tests,
    stand_in,
    worst_finished,
)
from lambda_search.names import CONTROL, PARAM
from lambda_search.records import keys


class LambdaResult(NamedTuple):
    """One λ of a confirmation: its FID per seed, their mean and interval, and its test against λ = 0."""

    lam: float
    # +inf (`DIVERGED`) for a run that diverged.
    fids: dict[int, float]
    # Mean FID and 95% CI, a diverged run counted as the worst finished FID of the confirmation.
    interval: Interval
    # None for the control itself, or when no seed holds a run of both this λ and λ = 0.
    test: PairedTest | None

    @property
    def diverged(self) -> int:
        """How many of its runs diverged."""
        return sum(fid == DIVERGED for fid in self.fids.values())


class Confirmation(NamedTuple):
    study: str
    seeds: list[int]
    # The study seed, with which the sweep chose its top λ: never a confirmation seed.
    selection_seed: int
    # Stored runs with the selection seed (a confirmation made before seeds excluded it): left out.
    ignored: int
    # The FID that stands in for a diverged run in means and t statistics.
    worst: float
    control: LambdaResult
    # The swept λ values, best mean FID first.
    candidates: list[LambdaResult]

    @property
    def best(self) -> LambdaResult:
        """The λ with the lowest mean FID, the control included."""
        return min([self.control, *self.candidates], key=lambda result: result.interval.mean)

    @property
    def winner(self) -> tuple[float, PairedTest] | None:
        """The λ of lowest mean FID among those that beat λ = 0 beyond noise, with its test; None if none does."""
        return next(((result.lam, result.test) for result in self.candidates  # best mean first
                     if result.test is not None and result.test.beyond_noise and result.test.difference.mean < 0),
                    None)

    @property
    def m(self) -> int:
        """The number of λ tested against λ = 0: what the p-values are adjusted over."""
        return sum(result.test is not None for result in self.candidates)


def confirmation_seeds(selection_seed: int, seeds: int) -> list[int]:
    """The `seeds` seeds of a confirmation: those after the seed the sweep selected its λ with."""
    return [selection_seed + offset for offset in range(1, seeds + 1)]


def stored_fids(trials: list[FrozenTrial]) -> dict[tuple[float, int], float]:
    """(λ, seed) → FID of the runs already stored; +inf for one that diverged (FAIL with a seed)."""
    stored: dict[tuple[float, int], float] = {}
    for trial in trials:
        if PARAM not in trial.params or keys.SEED not in trial.user_attrs:
            continue
        key = (float(trial.params[PARAM]), int(trial.user_attrs[keys.SEED]))
        if trial.state == TrialState.COMPLETE and trial.value is not None:
            stored[key] = trial.value
        elif trial.state == TrialState.FAIL and keys.DIVERGED in trial.user_attrs:
            stored[key] = DIVERGED
    return stored


def summarize(study_name: str, lams: list[float], seeds: list[int],
              fids: dict[tuple[float, int], float], selection_seed: int) -> Confirmation:
    """Means, intervals and Holm-adjusted tests against λ = 0 from the runs' FIDs (+inf for a diverged run).

    Only the runs of `lams` on `seeds` count; the stored runs with `selection_seed` are
    counted as ignored.

    Raises:
        ConfigError: `seeds` holds `selection_seed`.
        NoResultError: every run diverged.
    """
    if selection_seed in seeds:
        raise ConfigError(f"seed {selection_seed} selected the λ values: it cannot confirm them")
    by_lam = {lam: {seed: fids[lam, seed] for seed in seeds if (lam, seed) in fids} for lam in lams}
    worst = worst_finished(*(list(runs.values()) for runs in by_lam.values()))
    control = by_lam[CONTROL]
    tested = [lam for lam in lams if lam != CONTROL and any(seed in control for seed in by_lam[lam])]
    pairs = [([by_lam[lam][seed] for seed in seeds if seed in by_lam[lam] and seed in control],
              [control[seed] for seed in seeds if seed in by_lam[lam] and seed in control]) for lam in tested]
    tests = dict(zip(tested, paired_tests(pairs), strict=True)) if tested else {}

    def result(lam: float) -> LambdaResult:
        return LambdaResult(lam, by_lam[lam], mean_interval(stand_in(list(by_lam[lam].values()), worst)),
                            tests.get(lam))

    candidates = sorted((result(lam) for lam in lams if lam != CONTROL and by_lam[lam]),
                        key=lambda r: r.interval.mean)
    ignored = sum(seed == selection_seed for _, seed in fids)
    return Confirmation(study_name, seeds, selection_seed, ignored, worst, result(CONTROL), candidates)


def figures(test: PairedTest) -> str:
    """A test's figures in one clause: the paired difference, its simultaneous interval, p raw and Holm, n, m."""
    difference = test.difference
    return (f"difference {difference.mean:+.4f}, {test.confidence:.1%} CI "
            f"[{difference.low:.4f}, {difference.high:.4f}]; "
            f"exact Wilcoxon p = {test.wilcoxon_p:.3g} (Holm {test.wilcoxon_p_holm:.3g}); "
            f"paired t p = {test.t_p:.3g} (Holm {test.t_p_holm:.3g}); {difference.n} paired seeds, m = {test.m} λ")


def verdict(confirmation: Confirmation) -> str:
    """One line: a λ beats λ = 0 (or loses to it) "beyond noise" only by the one rule (`PairedTest.beyond_noise`).

    It ends with the effect the budget could have detected with 80% power: that of the
    test named, or of the best λ's when none is.
    """
    if confirmation.winner is not None:
        lam, test = confirmation.winner
        return (f"λ = {lam:.6g} beats λ = 0 beyond noise: mean FID {-test.difference.mean:.4f} lower "
                f"({figures(test)}); {detectable_clause(test.detectable)}")
    tested = [result for result in confirmation.candidates if result.test is not None]
    worse = next((result for result in tested if result.test is not None and result.test.beyond_noise), None)
    if worse is not None and worse.test is not None:  # beyond noise and not a winner: higher than λ = 0
        return (f"λ = {worse.lam:.6g} scores higher than λ = 0 beyond noise: mean FID "
                f"{worse.test.difference.mean:.4f} higher ({figures(worse.test)}); "
                f"{detectable_clause(worse.test.detectable)}")
    best = confirmation.best
    if best.test is None:
        line = (f"λ = 0 has the lowest mean FID ({best.interval.mean:.4f}) over {len(confirmation.seeds)} seed(s)"
                if best.lam == CONTROL else f"λ = {best.lam:.6g} has no seed paired with λ = 0")
    else:
        line = (f"the best λ = {best.lam:.6g} is {-best.test.difference.mean:.4f} lower on average "
                f"({figures(best.test)})")
    shown = best.test if best.test is not None else next((result.test for result in tested), None)
    return f"no effect detectable at this budget: {line}; {detectable_clause(shown.detectable if shown else math.inf)}"
