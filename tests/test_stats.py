"""Confidence intervals, paired tests and Holm's adjustment against hand computations (scipy) on fixed numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from lambda_search.errors import ConfigError, NoResultError
from lambda_search.metrics.stats import (
    DIVERGED,
    Interval,
    beyond_noise,
    detectable_clause,
    detectable_effect,
    differences,
    excludes_zero,
    holm,
    judge,
    mean_interval,
    min_seeds,
    paired_difference,
    paired_tests,
    power_at,
    seeds_for_effect,
)


def test_mean_interval_matches_a_hand_computation():
    # FIDs 10, 12, 14: mean 12; deviations −2, 0, 2 → s² = (4 + 0 + 4) / 2 = 4, s = 2;
    # s/√3 = 1.1547005; t(0.975, 2) = 4.3026527 (tables: 4.303);
    # half width 4.3026527 · 1.1547005 = 4.9682754 → [7.0317246, 16.9682754].
    interval = mean_interval([10.0, 12.0, 14.0])
    assert interval.mean == 12.0
    assert interval.n == 3
    assert interval.half_width == pytest.approx(4.9682754, abs=1e-6)
    assert interval.low == pytest.approx(7.0317246, abs=1e-6)
    assert interval.high == pytest.approx(16.9682754, abs=1e-6)


def test_paired_difference_matches_a_hand_computation():
    # Per seed: 20 − 21 = −1, 18 − 20 = −2, 19 − 22 = −3, 21 − 21 = 0, 17 − 19 = −2.
    # Mean −8/5 = −1.6; deviations 0.6, −0.4, −1.4, 1.6, −0.4 → squares 0.36, 0.16, 1.96, 2.56, 0.16,
    # sum 5.2, s² = 5.2/4 = 1.3, s = 1.1401754, s/√5 = 0.5099020; t(0.975, 4) = 2.7764451 (tables: 2.776);
    # half width 2.7764451 · 0.5099020 = 1.4157148 → [−3.0157148, −0.1842852]: excludes 0.
    runs = [20.0, 18.0, 19.0, 21.0, 17.0]
    control = [21.0, 20.0, 22.0, 21.0, 19.0]
    difference = paired_difference(runs, control)
    assert difference.mean == pytest.approx(-1.6)
    assert difference.low == pytest.approx(-3.0157148, abs=1e-6)
    assert difference.high == pytest.approx(-0.1842852, abs=1e-6)
    assert excludes_zero(difference)


def test_pairing_removes_the_noise_the_seeds_share():
    # Each seed moves both runs alike: unpaired, the means (20 vs 21) overlap widely;
    # paired, every difference is exactly −1, so s = 0 and the interval is the point −1.
    runs = [10.0, 20.0, 30.0]
    control = [11.0, 21.0, 31.0]
    assert mean_interval(runs).high > mean_interval(control).low
    difference = paired_difference(runs, control)
    assert difference == Interval(-1.0, -1.0, -1.0, 3)
    assert excludes_zero(difference)


def test_verdict_on_intervals_that_hold_zero_or_not():
    assert not excludes_zero(Interval(0.5, -1.0, 2.0, 3))
    assert excludes_zero(Interval(3.0, 1.0, 5.0, 3))
    assert excludes_zero(Interval(-3.0, -5.0, -1.0, 3))
    assert not excludes_zero(Interval(1.0, 0.0, 2.0, 3))  # touching 0 is not beyond it


def test_one_run_says_nothing_about_the_spread():
    interval = mean_interval([15.0])
    assert interval.mean == 15.0
    assert (interval.low, interval.high) == (-math.inf, math.inf)
    assert not excludes_zero(interval)


def test_bad_input_names_the_problem():
    with pytest.raises(ConfigError, match="at least one value"):
        mean_interval([])
    with pytest.raises(ConfigError, match="3 runs and 2 control runs"):
        paired_difference([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ConfigError, match="confidence"):
        mean_interval([1.0, 2.0], confidence=1.5)


# Three λ against one control on five seeds (FIDs chosen so that each λ tells a different story).
CONTROL_FIDS = [21.0, 20.0, 22.0, 21.0, 19.0]
CLEAR = [19.0, 17.5, 19.2, 18.0, 16.1]     # lower on every seed: differences −2, −2.5, −2.8, −3, −2.9
MIXED = [20.0, 18.0, 19.0, 21.5, 17.0]     # −1, −2, −3, +0.5, −2
NOISE = [24.0, 17.0, 25.0, 20.0, 19.5]     # +3, −3, +3, −1, +0.5


def test_paired_tests_match_scipy_and_holm_by_hand():
    tests = paired_tests([(CLEAR, CONTROL_FIDS), (MIXED, CONTROL_FIDS), (NOISE, CONTROL_FIDS)])
    raw_t = [scipy.stats.ttest_rel(values, CONTROL_FIDS).pvalue for values in (CLEAR, MIXED, NOISE)]
    raw_w = [scipy.stats.wilcoxon(values, CONTROL_FIDS, method="exact").pvalue for values in (CLEAR, MIXED, NOISE)]
    assert [test.t_p for test in tests] == pytest.approx(raw_t, rel=1e-9)
    assert [test.wilcoxon_p for test in tests] == pytest.approx(raw_w, rel=1e-9)
    # Exact Wilcoxon, 5 pairs: all 5 of one sign → 2/32; one positive of rank 1 (+0.5) → 2·2/32.
    # NOISE: ranks of |d| 4, 4, 4 (tied 3s), 2, 1 → R− = 4 + 2 = 6; P(W ≤ 6) = 13/32 for n = 5 → p = 26/32.
    assert raw_w == pytest.approx([0.0625, 0.125, 0.8125])
    # Paired t by hand: t = mean/(s/√5) with 4 degrees of freedom → −14.6216, −2.53546, +0.430331.
    assert raw_t == pytest.approx([1.2727645e-4, 0.064290111, 0.68912642], rel=1e-7)
    # Holm over m = 3 by hand: already in rank order CLEAR < MIXED < NOISE, so ×3, ×2, ×1:
    # 3 · 1.2727645e-4 = 3.8182936e-4, 2 · 0.064290111 = 0.12858022, 1 · 0.68912642; monotone, none capped.
    assert [test.t_p_holm for test in tests] == pytest.approx([3.8182936e-4, 0.12858022, 0.68912642], rel=1e-7)
    assert [test.wilcoxon_p_holm for test in tests] == pytest.approx([0.1875, 0.25, 0.8125])
    # The interval is Bonferroni's: t at 1 − 0.05/6 with 4 degrees of freedom, around the mean difference.
    clear = tests[0]
    diffs = [v - c for v, c in zip(CLEAR, CONTROL_FIDS, strict=True)]
    half = scipy.stats.t.ppf(1 - 0.05 / 6, 4) * scipy.stats.tstd(diffs) / math.sqrt(5)
    assert clear.difference.mean == pytest.approx(-2.64)
    assert (clear.difference.low, clear.difference.high) == pytest.approx((-2.64 - half, -2.64 + half))
    assert clear.m == 3 and clear.confidence == pytest.approx(1 - 0.05 / 3)
    # The interval excludes 0: beyond noise by the one rule, though the exact Wilcoxon shown beside it cannot go
    # below 0.05 over 3 λ with 5 seeds (it no longer gates the verdict: with 3 seeds it never could).
    assert clear.difference.high < 0 and clear.beyond_noise and clear.wilcoxon_p_holm > 0.05
    assert not tests[1].beyond_noise and not tests[2].beyond_noise
    assert min_seeds(3) == 7 and min_seeds(1) == 6


def test_holm_is_monotone_and_capped():
    # Sorted 0.005, 0.01, 0.03, 0.04 → ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04 → monotone: 0.02, 0.03, 0.06, 0.06.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    assert holm([0.02]) == [0.02]


def test_seven_clear_seeds_are_beyond_noise_over_three_comparisons():
    control = [20.0 + seed for seed in range(7)]
    better = [fid - 3.0 - 0.1 * seed for seed, fid in enumerate(control)]
    tests = paired_tests([(better, control), (control, control), (control, control)])
    assert tests[0].wilcoxon_p == pytest.approx(2 / 2**7)
    assert tests[0].wilcoxon_p_holm == pytest.approx(3 * 2 / 2**7)
    assert tests[0].beyond_noise
    # Identical runs: every difference is 0, dropped by the Wilcoxon; nothing to see.
    assert tests[1].wilcoxon_p == 1.0 and tests[1].t_p == 1.0 and not tests[1].beyond_noise


def test_a_diverged_run_counts_as_a_loss():
    control = [21.0, 20.0, 22.0, 21.0, 19.0, 20.5]
    # Better by 2 on five seeds; diverged on the sixth.
    diverging = [19.0, 18.0, 20.0, 19.0, 17.0, DIVERGED]
    [test] = paired_tests([(diverging, control)])
    # Wilcoxon: +∞ is the largest |difference|, rank 6, positive: scipy on the same ranks agrees.
    assert test.wilcoxon_p == pytest.approx(scipy.stats.wilcoxon([-2, -2.01, -2.02, -2.03, -2.04, 99], method="exact")
                                            .pvalue)
    # t: the diverged run scores the worst finished FID given (22.0): difference 22.0 − 20.5 = +1.5.
    assert test.t_p == pytest.approx(scipy.stats.ttest_rel([19, 18, 20, 19, 17, 22.0], control).pvalue)
    assert test.difference.mean == pytest.approx((-2 * 5 + 1.5) / 6)
    # Both diverged on a seed: a tie (difference 0), dropped by the Wilcoxon.
    assert differences([DIVERGED, 1.0], [DIVERGED, 2.0]) == [0.0, -1.0]
    with pytest.raises(NoResultError, match="every run diverged"):
        paired_tests([([DIVERGED], [DIVERGED])])


# ---- The detectable effect, against computations that do not share its formula ----------------------------------


@pytest.mark.parametrize(("sd", "n_seeds", "m"), [(11.0, 3, 1), (11.0, 8, 1), (6.0, 7, 3)])
def test_the_detectable_effect_is_detected_80_percent_of_the_time_in_a_simulation(sd, n_seeds, m):
    """Monte Carlo: normal differences with the detectable mean; scipy's one-sample t test at α/m rejects ~80%."""
    effect = detectable_effect(sd, n_seeds, m=m)
    draws = np.random.default_rng(19).normal(effect, sd, size=(20_000, n_seeds))
    rejected = scipy.stats.ttest_1samp(draws, 0.0, axis=1).pvalue < 0.05 / m
    # 20,000 draws: the standard error of the rate is 0.003; 0.015 is five of them.
    assert rejected.mean() == pytest.approx(0.8, abs=0.015)


def test_power_is_one_for_an_effect_far_beyond_the_noise():
    # scipy's noncentral t returns NaN at a noncentrality near 1e300; `plan --effect 1e300` printed "nan% power".
    assert power_at(1e300, 11.0, 3) == 1.0 and power_at(1e-300, 11.0, 3) < 0.1


def test_the_seeds_for_an_effect_match_the_textbook_value():
    """Paired t, d = effect/sd = 0.5, α = 0.05 two-sided, 80% power: n = 33.37 (G*Power, statsmodels' TTestPower)."""
    assert seeds_for_effect(0.5, 1.0) == 34
    assert detectable_effect(1.0, 34) < 0.5 < detectable_effect(1.0, 33)
    # The figure: difference sd 11.0 (quickstart, CPU) needs ~40 seeds for a 5-FID effect; sd 5.5 (EMA) ~14.
    assert seeds_for_effect(5.0, 11.0) == 40 and seeds_for_effect(5.0, 5.5) == 12
    assert seeds_for_effect(100.0, 1.0, least=3) == 3


def test_no_spread_and_one_seed_are_the_edges():
    assert detectable_effect(11.0, 1) == math.inf and power_at(5.0, 11.0, 1) == 0.0
    assert detectable_effect(0.0, 3) == 0.0
    assert detectable_clause(math.inf) == "detectable: nothing with fewer than 2 paired seeds"
    assert detectable_clause(23.04) == "detectable: ≥ 23.0 FID at 80% power"
    with pytest.raises(ConfigError, match="effect to detect must be a finite number > 0"):
        seeds_for_effect(0.0, 11.0)
    with pytest.raises(ConfigError, match="power must be in"):
        detectable_effect(11.0, 3, power=1.0)


def test_the_rule_claims_each_direction_at_half_alpha_over_m_when_nothing_differs():
    """The false-claim rate of the one rule, counted both ways: α/(2m) "lower", α/(2m) "higher" per comparison."""
    rng = np.random.default_rng(7)
    for m in (1, 3):
        claims = {"lower": 0, "higher": 0}
        for _ in range(4000):
            interval = mean_interval(list(rng.normal(0.0, 11.0, 3)), 1 - 0.05 / m)  # judge's interval, 3 seeds
            if beyond_noise(interval):
                claims["lower" if interval.mean < 0 else "higher"] += 1
        # 4,000 draws: standard error ≤ 0.0025 at rate 0.025.
        assert claims["lower"] / 4000 == pytest.approx(0.05 / (2 * m), abs=0.01)
        assert claims["higher"] / 4000 == pytest.approx(0.05 / (2 * m), abs=0.01)


def test_judge_is_the_interval_and_the_detectable_effect_of_the_same_differences():
    paired = [-12.0, 3.0, -20.0, 5.0]
    interval, detectable = judge(paired, m=2)
    low, high = scipy.stats.ttest_1samp(paired, 0.0).confidence_interval(1 - 0.05 / 2)
    assert (interval.low, interval.high) == pytest.approx((low, high))
    assert detectable == pytest.approx(detectable_effect(scipy.stats.tstd(paired), 4, m=2))
