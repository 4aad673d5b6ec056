"""Mean FIDs and paired differences with Student-t confidence intervals; pure, no torch.

GAN training is noisy: two seeds at one λ can differ by more FID than two
neighbouring λ values. A confirmation trains every λ with the same seeds, so the
difference to the λ = 0 control is taken seed by seed (paired), which cancels the
part of the noise that the seed puts into every λ alike.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import NamedTuple

from lambda_search.errors import ConfigError

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
    if len(values) != len(control):
        raise ConfigError(
            f"a paired difference needs one control run per seed: got {len(values)} runs and "
            f"{len(control)} control runs"
        )
    return mean_interval([value - base for value, base in zip(values, control, strict=True)], confidence)


def excludes_zero(interval: Interval) -> bool:
    """True when 0 lies outside the interval: the difference is beyond the noise."""
    return interval.low > 0 or interval.high < 0
