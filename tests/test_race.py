"""The race's decision rule and its curve, driven without training: FIDs come from a formula."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats

from lambda_search.metrics.curve import fit_curve
from lambda_search.metrics.stats import detectable_clause, detectable_effect, paired_tests
from lambda_search.names import CONTROL
from lambda_search.sweep.race.rule import (
    SEARCH,
    VERDICT,
    Done,
    Propose,
    Repeat,
    Run,
    Wait,
    chosen,
    next_run,
    search_budget,
    standing,
    summarize,
    verdict,
    verdict_line,
    verdict_seed_count,
    verdict_seeds,
)

Fid = Callable[[float, int], float]


def race(fid: Fid, n_trials: int, proposals: list[float], seed: int = 0, requested_seeds: int = 0) -> list[Run]:
    """One worker's race: each run finishes before the next is decided."""
    runs: list[Run] = []
    queue = iter(proposals)
    while not isinstance(action := next_run(runs, n_trials, seed, requested_seeds), Done):
        assert not isinstance(action, Wait)
        if isinstance(action, Propose):
            lam, role, run_seed = next(queue), SEARCH, action.seed
        else:
            lam, role, run_seed = action.lam, action.role, action.seed
        runs.append(Run(lam, run_seed, role, fid(lam, run_seed)))
    return runs


def seed_effect(seed: int) -> float:
    return 10 * math.sin(seed * 1.7)


def curve(lam: float, seed: int) -> float:
    """Best at λ = 1e-3, a per-seed effect shared across λ, λ = 0 well worse than the best."""
    base = 95.0 if lam == CONTROL else 80 + 3 * math.log10(lam / 1e-3) ** 2
    return base + seed_effect(seed)


PROPOSALS = [1e-4, 1e-3, 1e-2, 3e-3, 3e-4, 2e-3, 5e-4, 7e-3, 1.5e-4, 4e-3, 8e-4, 6e-4] * 3


def test_the_search_runs_lambda_zero_then_new_lambdas_all_on_the_search_seed():
    assert next_run([], 16, seed=5) == Repeat(CONTROL, 5, SEARCH)
    runs = [Run(CONTROL, 5, SEARCH, 95.0)]
    assert next_run(runs, 16, seed=5) == Propose(5)
    # λ = 0 still running on another worker: the spare worker starts a new λ, never a second λ = 0.
    assert next_run([Run(CONTROL, 5, SEARCH)], 16, seed=5) == Propose(5)


def test_the_incumbent_is_the_fitted_curves_best_not_the_luckiest_run():
    """A valley of good runs beats one lucky run among bad neighbours, as the fitted curve says."""
    rng = np.random.default_rng(0)
    lams = list(np.logspace(-4, -2, 17))
    fids = [90 - 8 * math.exp(-0.5 * ((math.log10(lam) + 3.5) / 0.3) ** 2) + rng.normal(0, 1.5) for lam in lams]
    lucky = 14  # λ ≈ 5.6e-3, far from the valley at 3e-4: a run 2 FID below the valley's best
    fids[lucky] = min(fids) - 2
    runs = [Run(CONTROL, 0, SEARCH, 92.0)] + [
        Run(float(lam), 0, SEARCH, fid) for lam, fid in zip(lams, fids, strict=True)]
    incumbent = standing(runs).incumbent
    assert incumbent is not None and 1.5e-4 < incumbent < 6e-4


def test_below_three_runs_the_lowest_run_leads_and_a_diverged_run_is_a_loss():
    runs = [Run(CONTROL, 0, SEARCH, 95.0), Run(1e-3, 0, SEARCH, 90.0), Run(1e-2, 0, SEARCH, math.inf)]
    assert standing(runs).incumbent == 1e-3
    runs += [Run(3e-3, 0, SEARCH, 91.0), Run(5e-4, 0, SEARCH, 92.0)]
    # Fitted, the diverged run stands at the study's worst FID: it never leads.
    assert standing(runs).incumbent != 1e-2


def test_the_budget_is_exact_and_every_lambda_zero_comparison_is_paired():
    for n_trials in (8, 16, 28, 40):
        runs = race(curve, n_trials, PROPOSALS)
        assert len(runs) == n_trials
        search = [run for run in runs if run.role == SEARCH]
        assert len(search) == search_budget(n_trials)
        assert {run.seed for run in search} == {0}
        assert [run.lam for run in search].count(CONTROL) == 1
        fresh = verdict_seeds(0, n_trials)
        assert len(fresh) >= 3 and not set(fresh) & {run.seed for run in search}
        assert sorted((run.lam, run.seed) for run in runs if run.role == VERDICT) == sorted(
            (lam, s) for lam in (standing(runs).incumbent, CONTROL) for s in fresh)


def test_verdict_seeds_replace_the_quarter_and_the_search_takes_what_is_left():
    # The default: a quarter of 20 runs is 2.5 seeds, at least 3: 6 verdict runs, 14 search runs.
    assert (verdict_seed_count(20), search_budget(20)) == (3, 14)
    assert (verdict_seed_count(20, 6), search_budget(20, 6)) == (6, 8)
    runs = race(curve, 20, PROPOSALS, requested_seeds=6)
    search = [run for run in runs if run.role == SEARCH]
    assert len(runs) == 20 and len(search) == 8 and {run.seed for run in search} == {0}
    fresh = verdict_seeds(0, 20, 6)
    assert fresh == [10_000 + index for index in range(6)]
    assert sorted((run.lam, run.seed) for run in runs if run.role == VERDICT) == sorted(
        (lam, s) for lam in (standing(runs).incumbent, CONTROL) for s in fresh)
    result = verdict(runs, 20, 0, 6)
    assert result is not None and result.seeds == 6 and result.verdict_seeds == fresh
    # Read with the default split, the same runs are not a finished verdict of 3 seeds on the same budget.
    assert verdict(runs, 20, 0) != result


def test_the_race_finds_the_best_lambda_and_says_so_beyond_noise():
    runs = race(curve, 40, PROPOSALS)
    result = verdict(runs, 40, 0)
    assert result is not None and 5e-4 <= result.lam <= 2e-3
    assert result.beyond_noise and result.difference < -10
    assert verdict_line(result).endswith(f"lower than λ = 0 beyond noise ({detectable_clause(result.detectable)})")


def test_the_verdict_matches_scipy_and_a_flat_curve_detects_nothing():
    def flat(lam: float, seed: int) -> float:
        return 90 + seed_effect(seed) + 2 * math.sin(1000 * lam + 3 * seed)

    runs = race(flat, 16, PROPOSALS)
    result = verdict(runs, 16, 0)
    assert result is not None
    fresh = verdict_seeds(0, 16)
    differences = [flat(result.lam, s) - flat(CONTROL, s) for s in fresh]
    low, high = stats.ttest_1samp(differences, 0).confidence_interval(0.95)
    assert (result.interval.low, result.interval.high) == pytest.approx((low, high))
    assert result.wilcoxon_p == pytest.approx(stats.wilcoxon(differences, method="exact").pvalue)
    assert result.interval.low < 0 < result.interval.high
    # The detectable effect at the verdict's own sd: the one rule's, the same as confirm's with m = 1.
    [test] = paired_tests([(result.fids, result.control_fids)])
    assert (test.difference, test.beyond_noise, test.detectable) == (result.interval, False, result.detectable)
    assert result.detectable == pytest.approx(detectable_effect(stats.tstd(differences), len(fresh)))
    assert verdict_line(result).endswith(
        f"no effect detectable with this budget (detectable: ≥ {result.detectable:.1f} FID at 80% power)")


def test_the_race_is_deterministic():
    assert race(curve, 28, PROPOSALS) == race(curve, 28, PROPOSALS)


def test_the_verdict_waits_for_the_search_and_keeps_its_lambda():
    search = [Run(CONTROL, 0, SEARCH, 95.0)] + [Run(lam, 0, SEARCH, curve(lam, 0))
                                                 for lam in PROPOSALS[:search_budget(16) - 2]]
    assert next_run([*search, Run(5e-3, 0, SEARCH, None)], 16, 0) == Wait()
    search.append(Run(5e-3, 0, SEARCH, curve(5e-3, 0)))
    first = next_run(search, 16, 0)
    assert isinstance(first, Repeat) and first.role == VERDICT and first.seed == verdict_seeds(0, 16)[0]
    # Once the verdict trains a λ, that λ is judged, whatever a refit of the search would say.
    started = [*search, Run(7e-3, first.seed, VERDICT, 90.0)]
    assert chosen(started) == 7e-3 and next_run(started, 16, 0) == Repeat(CONTROL, first.seed, VERDICT)


def test_the_summary_shows_the_runs_the_curve_and_the_incumbents_path():
    runs = race(curve, 16, PROPOSALS)
    summary = summarize(runs, 16, 0, 1e-4, 1e-2)
    search = [run for run in runs if run.role == SEARCH and run.lam != CONTROL]
    assert [lam for lam, *_ in summary.runs] == [run.lam for run in search]
    assert summary.control_fid == curve(CONTROL, 0) and summary.search_seed == 0
    assert summary.path[-1] == summary.verdict.lam == standing(runs).incumbent  # type: ignore[union-attr]
    lams = [lam for lam, _, _ in summary.curve]
    assert lams[0] == pytest.approx(1e-4) and lams[-1] == pytest.approx(1e-2)
    assert summary.verdict_text == verdict_line(summary.verdict)
    assert summarize(runs[:3], 16, 0, 1e-4, 1e-2).verdict_text.startswith("race verdict: not yet")


def test_the_curve_recovers_a_noisy_minimum_and_is_reproducible():
    rng = np.random.default_rng(1)
    lams = [float(10 ** x) for x in rng.uniform(-4, -2, 25)]
    fids = [85 + 6 * (math.log10(lam) + 3) ** 2 + rng.normal(0, 2) for lam in lams]
    fitted = fit_curve(lams, fids)
    assert abs(math.log10(fitted.best()) + 3) < 0.3
    (mean, sd), = fitted.predict([1e-3])
    assert abs(mean - 85) < 2.5 and 0 < sd < 2
    assert fit_curve(lams, fids).predict(lams) == fitted.predict(lams)
    # Too few runs to fit: each run's own FID, and no claim on its spread.
    assert fit_curve([1e-3, 1e-2], [90.0, 91.0]).predict([1e-2]) == [(91.0, math.inf)]
