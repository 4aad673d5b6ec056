"""The race's decision rule, driven without training: FIDs come from a formula."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from scipy import stats

from lambda_search.names import CONTROL
from lambda_search.sweep.race import (
    SEARCH,
    VERDICT,
    Done,
    Propose,
    Repeat,
    Run,
    Wait,
    next_run,
    search_budget,
    standing,
    summarize,
    verdict,
    verdict_line,
    verdict_seeds,
)

Fid = Callable[[float, int], float]


def race(fid: Fid, n_trials: int, proposals: list[float], seed: int = 0) -> list[Run]:
    """One worker's race: each run finishes before the next is decided."""
    runs: list[Run] = []
    queue = iter(proposals)
    while not isinstance(action := next_run(runs, n_trials, seed), Done):
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
    """Best at λ = 1e-3, a per-seed effect shared across λ, λ = 0 a little worse than the best."""
    base = 95.0 if lam == CONTROL else 80 + 3 * math.log10(lam / 1e-3) ** 2
    return base + seed_effect(seed)


PROPOSALS = [1e-4, 1e-3, 1e-2, 3e-3, 3e-4, 2e-3, 5e-4, 7e-3, 1.5e-4, 4e-3, 8e-4, 6e-4] * 3


def test_a_new_lambda_starts_on_the_first_seed_and_lambda_zero_follows_the_incumbent():
    assert next_run([], 16, seed=5) == Propose(5)
    runs = [Run(1e-3, 5, SEARCH, 90.0)]
    assert next_run(runs, 16, seed=5) == Repeat(CONTROL, 5, SEARCH)


def test_a_worse_challenger_is_rejected_and_a_better_one_earns_the_next_seed():
    runs = [Run(1e-3, 0, SEARCH, 90.0), Run(CONTROL, 0, SEARCH, 95.0), Run(1e-2, 0, SEARCH, 99.0)]
    # Two challengers entered: the incumbent earns seed 1 (the rejected 1e-2 earns nothing).
    assert next_run(runs, 40, 0) == Repeat(1e-3, 1, SEARCH)
    runs += [Run(1e-3, 1, SEARCH, 92.0), Run(CONTROL, 1, SEARCH, 96.0), Run(3e-3, 0, SEARCH, 85.0)]
    assert next_run(runs, 40, 0) == Repeat(3e-3, 1, SEARCH)
    runs.append(Run(3e-3, 1, SEARCH, 91.0))  # mean 88 against 91 on the same two seeds
    assert standing(runs).incumbent == 3e-3


def test_a_diverged_run_is_a_loss():
    runs = [Run(1e-3, 0, SEARCH, 90.0), Run(CONTROL, 0, SEARCH, 95.0), Run(1e-2, 0, SEARCH, math.inf)]
    state = standing(runs)
    assert state.incumbent == 1e-3 and not state.alive(1e-2)


def test_the_budget_is_exact_and_every_lambda_zero_comparison_is_paired():
    for n_trials in (8, 16, 28, 40):
        runs = race(curve, n_trials, PROPOSALS)
        assert len(runs) == n_trials
        search = [run for run in runs if run.role == SEARCH]
        assert len(search) == search_budget(n_trials)
        incumbent = standing(runs).incumbent
        control_seeds = {run.seed for run in search if run.lam == CONTROL}
        assert {run.seed for run in search if run.lam == incumbent} <= control_seeds
        fresh = verdict_seeds(0, n_trials)
        assert len(fresh) >= 3 and not set(fresh) & {run.seed for run in search}
        assert sorted((run.lam, run.seed) for run in runs if run.role == VERDICT) == sorted(
            (lam, s) for lam in (incumbent, CONTROL) for s in fresh)


def test_the_race_finds_the_best_lambda_and_says_so_beyond_noise():
    runs = race(curve, 40, PROPOSALS)
    result = verdict(runs, 40, 0)
    assert result is not None and result.lam in (1e-3, 8e-4, 6e-4, 2e-3, 5e-4)
    assert result.beyond_noise and result.difference < -10
    assert verdict_line(result).endswith("lower than λ = 0 beyond noise")


def test_the_verdict_matches_scipy_and_a_flat_curve_detects_nothing():
    def flat(lam: float, seed: int) -> float:
        return 90 + seed_effect(seed) + 2 * math.sin(1000 * lam + 3 * seed)

    runs = race(flat, 16, PROPOSALS)
    result = verdict(runs, 16, 0)
    assert result is not None
    fresh = verdict_seeds(0, 16)
    differences = [flat(result.lam, s) - flat(CONTROL, s) for s in fresh]
    low, high = stats.ttest_1samp(differences, 0).confidence_interval(0.95)
    assert (result.low, result.high) == pytest.approx((low, high))
    assert result.wilcoxon_p == pytest.approx(stats.wilcoxon(differences, method="exact").pvalue)
    assert result.low < 0 < result.high
    assert verdict_line(result).endswith("no effect detectable with this budget")


def test_the_race_is_deterministic():
    assert race(curve, 28, PROPOSALS) == race(curve, 28, PROPOSALS)


def test_busy_lambdas_are_skipped_and_the_verdict_waits_for_the_search():
    runs = [Run(1e-3, 0, SEARCH, 90.0), Run(CONTROL, 0, SEARCH, None)]
    # λ = 0 runs elsewhere and nothing else is due: a second worker starts a challenger.
    assert next_run(runs, 16, 0) == Propose(0)
    runs = [Run(1e-3, 0, SEARCH, 90.0), Run(CONTROL, 0, SEARCH, 95.0)] + [
        Run(lam, 0, SEARCH, 99.0) for lam in PROPOSALS[1:search_budget(16) - 2]] + [Run(5e-3, 0, SEARCH, None)]
    assert len(runs) == search_budget(16)
    assert next_run(runs, 16, 0) == Wait()


def test_the_summary_lists_each_lambda_and_the_incumbents_path():
    runs = [Run(1e-3, 0, SEARCH, 90.0), Run(CONTROL, 0, SEARCH, 95.0), Run(1e-2, 0, SEARCH, 85.0)]
    # 1e-2 beat the one-seed incumbent on its seed: it leads, and earns the next seed.
    assert next_run(runs, 16, 0) == Repeat(1e-2, 1, SEARCH)
    runs += [Run(1e-2, 1, SEARCH, 88.0), Run(CONTROL, 1, SEARCH, 96.0)]
    summary = summarize(runs, 16, 0)
    assert [lam for lam, _ in summary.lambdas] == [CONTROL, 1e-3, 1e-2]
    assert [(interval.mean, interval.n) for _, interval in summary.lambdas] == [(95.5, 2), (90.0, 1), (86.5, 2)]
    assert summary.path == [1e-3, 1e-2]
    assert summary.verdict.startswith("race verdict: not yet")
