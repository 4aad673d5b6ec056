"""Mean FIDs and paired differences with Student-t confidence intervals; pure, no torch.

GAN training is noisy: two seeds at one λ can differ by more FID than two
neighbouring λ values. A confirmation trains every λ with the same seeds, so the
difference to the λ = 0 control is taken seed by seed (paired), which cancels the
part of the noise that the seed puts into every λ alike.

When several λ are each compared with λ = 0, one of them beats it by luck more
often than one test's 5%: `paired_tests` adjusts for the m comparisons. Its
pre-registered primary test is the exact Wilcoxon signed-rank test, Holm-adjusted:
distribution-free (FID differences of GANs have heavy tails) and able to rank a
diverged run as a plain loss. The paired t test supplies the interval (Bonferroni
level 1 − α/m, since a Holm-adjusted interval is not a standard object) and its p,
raw and Holm-adjusted; a difference is "beyond noise" only when both agree.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import NamedTuple

from lambda_search.errors import ConfigError, NoResultError

# The conventional level; the CLI and the export say "95% CI" in so many words.
CONFIDENCE = 0.95


class Interval(NamedTuple):
    """A mean and its two-sided confidence interval [low, high] over `n` values."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return self.high - self.mean


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean of `values` ± t(1 − α/2, n − 1) · s/√n, s the sample standard deviation.

    With a single value nothing is known about the spread: the interval is
    (−∞, +∞), so no verdict can claim more than one run shows.

    Raises:
        ConfigError: `values` is empty or `confidence` is not in (0, 1).
    """
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence!r}")
    if not values:
        raise ConfigError("a confidence interval needs at least one value, got none")
    mean = statistics.fmean(values)
    n = len(values)
    if n == 1:
        return Interval(mean, -math.inf, math.inf, 1)
    # scipy.stats costs about a second to import: only a confirmation needs it, not every report.
    from scipy.stats import t as student_t

    half_width = float(student_t.ppf((1 + confidence) / 2, n - 1)) * statistics.stdev(values) / math.sqrt(n)
    return Interval(mean, mean - half_width, mean + half_width, n)


def paired_difference(values: Sequence[float], control: Sequence[float],
                      confidence: float = CONFIDENCE) -> Interval:
    """The mean of ``values[i] − control[i]`` (same seed i) and its interval.

    Negative means `values` scored a lower (better) FID than `control`.

    Raises:
        ConfigError: the two lists differ in length (the runs are not paired).
    """
    return mean_interval(differences(values, control), confidence)


def excludes_zero(interval: Interval) -> bool:
    """True when 0 lies outside the interval: the difference is beyond the noise."""
    return interval.low > 0 or interval.high < 0


# ---- Paired tests of several λ against λ = 0, with Holm's correction ------------------------------

# The family-wise error rate the verdict controls: at most a 5% chance that any "beyond noise" is noise.
ALPHA = 0.05
# The FID of a run that diverged: worse than any run that finished. See `paired_tests` for how each test uses it.
DIVERGED = math.inf


class PairedTest(NamedTuple):
    """One λ against λ = 0 on the same seeds, as one of `m` such comparisons.

    `difference` is the mean of ``λ's FID − λ = 0's FID`` per seed with its simultaneous
    interval: Student t at confidence 1 − α/m (Bonferroni), so that the m intervals
    together hold their true differences with probability ≥ 1 − α. The p-values are
    two-sided, raw and Holm-adjusted over the m comparisons.
    """

    difference: Interval
    t_p: float
    t_p_holm: float
    wilcoxon_p: float
    wilcoxon_p_holm: float
    m: int
    alpha: float

    @property
    def confidence(self) -> float:
        """The level of `difference`'s interval: 1 − α/m."""
        return 1 - self.alpha / self.m

    @property
    def beyond_noise(self) -> bool:
        """The primary test (exact Wilcoxon, Holm-adjusted) rejects AND the simultaneous t interval excludes 0.

        The t condition is the Bonferroni-level t test, a little stricter than Holm's t:
        it keeps the verdict from ever contradicting the interval printed beside it.
        """
        return self.wilcoxon_p_holm < self.alpha and excludes_zero(self.difference)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: the i-th smallest p times (m − i + 1), made monotone, capped at 1.

    Returned in the order given. Rejecting where the adjusted p < α controls the
    family-wise error rate at α whatever the dependence between the tests.
    """
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def t_p_value(differences: Sequence[float]) -> float:
    """Two-sided p of the paired t test that the mean difference is 0 (scipy's ttest_rel on the pairs).

    With fewer than two differences nothing is known about the spread: p = 1 (no
    evidence). With no spread at all, p = 0 unless every difference is 0 (then 1).
    """
    n = len(differences)
    if n < 2:
        return 1.0
    mean, spread = statistics.fmean(differences), statistics.stdev(differences)
    if spread == 0:
        return 1.0 if mean == 0 else 0.0
    from scipy.stats import t as student_t

    return float(2 * student_t.sf(abs(mean) / (spread / math.sqrt(n)), n - 1))


def wilcoxon_p_value(differences: Sequence[float]) -> float:
    """Two-sided p of the exact Wilcoxon signed-rank test that the differences are symmetric about 0.

    scipy.stats.wilcoxon with method="exact" and zero_method="wilcox": a zero
    difference (both runs scored alike, or both diverged) is dropped and the exact
    null distribution is that of the remaining n. Tied |differences| (two diverged
    runs, +∞ each) get mid-ranks and scipy rounds the statistic conservatively, so p
    is then a little too large, never too small. Differences may be ±∞: only ranks
    matter. With no non-zero difference, p = 1.
    """
    nonzero = [difference for difference in differences if difference != 0]
    if not nonzero:
        return 1.0
    from scipy.stats import wilcoxon

    return float(wilcoxon(nonzero, method="exact", zero_method="wilcox", alternative="two-sided").pvalue)


def min_seeds(m: int, alpha: float = ALPHA) -> int:
    """The fewest pairs with which the exact Wilcoxon can reach Holm-adjusted p < α over m comparisons.

    Its smallest two-sided p with n pairs is 2/2ⁿ (every difference of one sign), and
    Holm multiplies the smallest p by m: n must satisfy m · 2/2ⁿ < α.
    """
    n = 1
    while m * 2 / 2**n >= alpha:
        n += 1
    return n


def differences(values: Sequence[float], control: Sequence[float]) -> list[float]:
    """``values[i] − control[i]`` per seed i, where a diverged run (+∞) loses to a finished one.

    Both diverged: 0, a tie.

    Raises:
        ConfigError: the two lists differ in length (the runs are not paired).
    """
    if len(values) != len(control):
        raise ConfigError(
            f"a paired difference needs one control run per seed: got {len(values)} runs and "
            f"{len(control)} control runs"
        )
    return [0.0 if value == base == DIVERGED else value - base for value, base in zip(values, control, strict=True)]


def worst_finished(*groups: Sequence[float]) -> float:
    """The highest finite FID among all the runs given: what stands in for a diverged run in the t statistics.

    Raises:
        NoResultError: every run diverged.
    """
    finished = [value for group in groups for value in group if math.isfinite(value)]
    if not finished:
        raise NoResultError("every run diverged: no FID to compare")
    return max(finished)


def stand_in(values: Sequence[float], worst: float) -> list[float]:
    """`values` with each diverged run (+∞) replaced by `worst`."""
    return [worst if value == DIVERGED else value for value in values]


def paired_tests(pairs: Sequence[tuple[Sequence[float], Sequence[float]]], alpha: float = ALPHA) -> list[PairedTest]:
    """Each (λ's FIDs, λ = 0's FIDs on the same seeds) pair tested, Holm-adjusted over the m = len(pairs).

    A diverged run (FID +∞, `DIVERGED`) counts as a loss, not as a missing value:
    the Wilcoxon ranks its difference as +∞ (the largest, against the λ that
    diverged); the t test and interval, which need numbers, take the worst finished
    FID among all the runs given in its place.

    Raises:
        ConfigError: a pair's lists differ in length, or `alpha` is not in (0, 1).
        NoResultError: every run diverged.
    """
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha!r}")
    m = len(pairs)
    worst = worst_finished(*(group for pair in pairs for group in pair))
    ranked = [differences(values, control) for values, control in pairs]
    numeric = [differences(stand_in(values, worst), stand_in(control, worst)) for values, control in pairs]
    t_ps = [t_p_value(d) for d in numeric]
    wilcoxon_ps = [wilcoxon_p_value(d) for d in ranked]
    return [PairedTest(mean_interval(d, 1 - alpha / m), t_p, t_holm, w_p, w_holm, m, alpha)
            for d, t_p, t_holm, w_p, w_holm in zip(numeric, t_ps, holm(t_ps), wilcoxon_ps, holm(wilcoxon_ps),
                                                  strict=True)]
