"""Mean FIDs and paired differences with Student-t confidence intervals; pure, no torch.

GAN training is noisy: two seeds at one λ can differ by more FID than two
neighbouring λ values. A confirmation trains every λ with the same seeds, so the
difference to the λ = 0 control is taken seed by seed (paired), which cancels the
part of the noise that the seed puts into every λ alike.

The one rule for "beyond noise", used by the race's verdict and by `confirm` alike
(`judge`, `beyond_noise`; docs/design.md, "One rule for beyond noise"): the mean
paired difference's two-sided Student-t interval at confidence 1 − α/m (Bonferroni
over the m comparisons made: m = 1 for the race, the λ tested for `confirm`)
excludes 0. Beside it, `detectable_effect` says how large a true difference this
rule would have caught with 80% power, from the same differences' sd. The exact
Wilcoxon signed-rank p, raw and Holm-adjusted, is shown as a distribution-free
second look; it does not decide (with 3 pairs it cannot fall below 0.25).
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
    spread = statistics.stdev(values)
    if spread == 0:  # scipy's interval needs a scale > 0; every value alike is the point itself
        return Interval(mean, mean, mean, n)
    # scipy.stats costs about a second to import: only a confirmation needs it, not every report.
    from scipy.stats import t as student_t

    low, high = student_t.interval(confidence, n - 1, loc=mean, scale=spread / math.sqrt(n))
    return Interval(mean, float(low), float(high), n)


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
# The one rule in words, for the export and the report (docs/design.md, "One rule for beyond noise").
RULE = "two-sided paired Student-t interval at confidence 1 − α/m (Bonferroni over the m comparisons) excludes 0"
# The power a verdict is sized for and its detectable effect quoted at: the conventional 80%.
POWER = 0.8


def beyond_noise(interval: Interval) -> bool:
    """The one rule, for the race and `confirm`: the simultaneous t interval of the mean difference excludes 0.

    `interval` is the paired difference's two-sided Student-t interval at confidence
    1 − α/m (`judge`). When every true difference is 0 and the differences are normal,
    it says "lower" with probability α/(2m) per comparison and "higher" with α/(2m), so
    over the m comparisons at most α/2 in each direction and α in all (Bonferroni).
    """
    return excludes_zero(interval)


def judge(paired: Sequence[float], m: int = 1, alpha: float = ALPHA) -> tuple[Interval, float]:
    """The rule's interval of the mean of the `paired` differences, and the effect it detects with 80% power.

    Args:
        paired: one difference (λ's FID − λ = 0's) per seed.
        m: the comparisons made (Bonferroni): 1 for the race, the λ tested for `confirm`.

    Returns:
        The Student-t interval at 1 − α/m, and `detectable_effect` at the differences' own sd.
    """
    spread = statistics.stdev(paired) if len(paired) > 1 else math.inf
    return mean_interval(paired, 1 - alpha / m), detectable_effect(spread, len(paired), alpha, m=m)


def power_at(effect: float, sd: float, n_seeds: int, alpha: float = ALPHA, m: int = 1) -> float:
    """The chance that the rule says "beyond noise" when the true mean difference is `effect`.

    The paired t statistic with n seeds is noncentral t with n − 1 degrees of freedom and
    noncentrality effect·√n / sd; the rule rejects where |t| > t(1 − α/(2m), n − 1). With
    fewer than 2 seeds the interval is (−∞, +∞): power 0.
    """
    if n_seeds < 2 or not math.isfinite(sd):
        return 0.0
    if sd == 0:
        return 1.0 if effect != 0 else 0.0
    from scipy.stats import nct
    from scipy.stats import t as student_t

    df = n_seeds - 1
    critical = float(student_t.ppf(1 - alpha / (2 * m), df))
    # Capped: scipy's nct returns NaN for a noncentrality near 1e300, and the power is 1.0 long before 1e6.
    shift = min(abs(effect) * math.sqrt(n_seeds) / sd, 1e6)
    # The lower tail as the upper tail of −shift: scipy's nct.cdf far below the mean can return NaN for 1e-16.
    return float(nct.sf(critical, df, shift) + nct.sf(critical, df, -shift))


def detectable_effect(sd: float, n_seeds: int, alpha: float = ALPHA, power: float = POWER, m: int = 1) -> float:
    """The smallest true |mean difference| (FID) the rule detects with probability `power` on `n_seeds` pairs.

    Args:
        sd: the standard deviation of the paired differences.

    Returns:
        math.inf with fewer than 2 seeds (no spread, no verdict); 0 when `sd` is 0.

    Raises:
        ConfigError: `power` is not in (α/m, 1).
    """
    if not alpha / m < power < 1:
        raise ConfigError(f"power must be in ({alpha / m:g}, 1), got {power!r}")
    if n_seeds < 2 or not math.isfinite(sd):
        return math.inf
    if sd == 0:
        return 0.0
    from scipy.optimize import brentq

    high = sd
    while power_at(high, sd, n_seeds, alpha, m) < power:
        high *= 2
    return float(brentq(lambda effect: power_at(effect, sd, n_seeds, alpha, m) - power, 0.0, high,
                        xtol=1e-9 * sd))


# More paired seeds than any study trains: a plan that needs more is refused, not computed.
SEED_LIMIT = 1_000_000


def seeds_for_effect(effect: float, sd: float, alpha: float = ALPHA, power: float = POWER, m: int = 1,
                     least: int = 2) -> int:
    """The fewest paired seeds (at least `least`) with which the rule detects `effect` FID with `power`.

    Raises:
        ConfigError: `effect` is not > 0, `sd` is not a finite number ≥ 0, or it takes more than `SEED_LIMIT` seeds.
    """
    if not (effect > 0 and math.isfinite(effect)):
        raise ConfigError(f"the effect to detect must be a finite number > 0 FID, got {effect!r}")
    if not (math.isfinite(sd) and sd >= 0):
        raise ConfigError(f"the paired differences' sd must be a finite number >= 0, got {sd!r}")
    low, high = least - 1, max(least, 2)
    while power_at(effect, sd, high, alpha, m) < power:  # power grows with the seeds: double, then bisect
        if high >= SEED_LIMIT:
            raise ConfigError(f"detecting {effect:g} FID at a paired sd of {sd:g} takes more than {SEED_LIMIT:,} "
                              "paired seeds: no budget trains that many; plan for a larger effect")
        low, high = high, 2 * high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if power_at(effect, sd, middle, alpha, m) >= power else (middle, high)
    return high


def detectable_clause(effect: float, power: float = POWER) -> str:
    """How a verdict line ends: the smallest effect its budget could have detected."""
    if math.isinf(effect):
        return "detectable: nothing with fewer than 2 paired seeds"
    return f"detectable: ≥ {effect:.1f} FID at {power:.0%} power"


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
    # The smallest |difference| this rule detects with 80% power, at the sd of these differences.
    detectable: float

    @property
    def confidence(self) -> float:
        """The level of `difference`'s interval: 1 − α/m."""
        return 1 - self.alpha / self.m

    @property
    def beyond_noise(self) -> bool:
        """The one rule (`beyond_noise`): the simultaneous t interval excludes 0."""
        return beyond_noise(self.difference)


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
    """Two-sided p of the paired t test that the mean difference is 0 (scipy's one-sample t test on the differences).

    With fewer than two differences nothing is known about the spread: p = 1 (no
    evidence). With no spread at all, p = 0 unless every difference is 0 (then 1).
    """
    if len(differences) < 2:
        return 1.0
    mean, spread = statistics.fmean(differences), statistics.stdev(differences)
    if spread == 0:
        return 1.0 if mean == 0 else 0.0
    from scipy.stats import ttest_1samp

    return float(ttest_1samp(differences, 0.0).pvalue)


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
    """The fewest pairs with which the exact Wilcoxon shown beside the rule can reach Holm-adjusted p < α over m.

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


def worst_finished(*groups: Sequence[float], default: float | None = None) -> float:
    """The highest finite FID among all the runs given: what stands in for a diverged run (`stand_in`).

    The one diverged-run policy: `confirm`'s tests and the race's curve and verdict all use it.

    Raises:
        NoResultError: every run diverged and no `default` was given.
    """
    finished = [value for group in groups for value in group if math.isfinite(value)]
    if finished:
        return max(finished)
    if default is None:
        raise NoResultError("every run diverged: no FID to compare")
    return default


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
    judged = [judge(d, m, alpha) for d in numeric]
    return [PairedTest(interval, t_p, t_holm, w_p, w_holm, m, alpha, detectable)
            for (interval, detectable), t_p, t_holm, w_p, w_holm in zip(judged, t_ps, holm(t_ps), wilcoxon_ps,
                                                                       holm(wilcoxon_ps), strict=True)]
