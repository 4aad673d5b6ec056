"""Confidence intervals against hand computations on fixed numbers."""

from __future__ import annotations

import math

import pytest

from lambda_search.errors import ConfigError
from lambda_search.metrics.stats import Interval, excludes_zero, mean_interval, paired_difference


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
