"""FID as a smooth curve over log10 λ: a Gaussian-process fit of noisy runs. Pure, no torch.

One run's FID is the curve plus noise (sd ≈ 5 FID in `docs/results/finding.db`), about as
large as the effects sought. Rather than re-train a λ to average its noise, the fit borrows
strength from neighbouring λ: a λ whose neighbours also scored low is more likely truly
low than one that stands alone. scikit-learn's `GaussianProcessRegressor` does it, with a
squared-exponential kernel over log10 λ plus white noise, its amplitude, length scale and
noise level fitted by maximum likelihood (restarts from a fixed random state, so the same
runs give the same fit).

`bench/race.py` measures what it buys the race (bench/RESULTS.md): against the first race rule
(raw means on shared seeds), the median regret of the λ kept fell by 36–58% at equal runs on
simulated studies with a narrow optimum, 14–44% with a wide one.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# A λ effect moves over tenths of a decade to a few decades: bounds on the kernel's length scale.
LENGTH_SCALE_DECADES = (0.2, 2.0)
# Fewer runs than this leave the kernel's three parameters unidentified: the raw FIDs stand.
MIN_RUNS_TO_FIT = 3
_RESTARTS = 3


@dataclass(frozen=True)
class Curve:
    """Fitted FID against λ: `predict` gives the mean and its standard deviation at any λ > 0."""

    model: Any  # a fitted sklearn GaussianProcessRegressor on standardized FIDs; None below MIN_RUNS_TO_FIT runs
    lams: tuple[float, ...]
    fids: tuple[float, ...]
    # The FIDs' mean and sd, which standardize them for the fit.
    center: float = 0.0
    scale: float = 1.0

    def predict(self, lams: Sequence[float]) -> list[tuple[float, float]]:
        """(mean FID, its sd) at each λ: the curve's own uncertainty, without a single run's noise.

        Below MIN_RUNS_TO_FIT runs: a run's own FID, with an unknown sd.
        """
        if self.model is None:
            own = dict(zip(self.lams, self.fids, strict=True))
            return [(own.get(lam, math.nan), math.inf) for lam in lams]
        means, sds = self.model.predict(np.log10(np.asarray(lams, dtype=float))[:, None], return_std=True)
        # The fitted kernel is (amplitude × RBF) + white noise: the noise is a run's, not the curve's.
        noise = self.model.kernel_.k2.noise_level
        return [(self.center + self.scale * float(mean), self.scale * math.sqrt(max(float(sd) ** 2 - noise, 0.0)))
                for mean, sd in zip(means, sds, strict=True)]

    def best(self) -> float:
        """The run λ with the lowest fitted FID (ties to the earlier run): the curve's pick among λ tried."""
        means = [mean for mean, _ in self.predict(self.lams)]
        return self.lams[min(range(len(self.lams)), key=means.__getitem__)]


def fit_curve(lams: Sequence[float], fids: Sequence[float]) -> Curve:
    """Fit FID over log10 λ to finished runs (λ > 0, finite FIDs; repeats of one λ allowed)."""
    return _fit(tuple(lams), tuple(fids))


# Each decision of a race refits the same runs until one more finishes: keep the last few fits.
@functools.lru_cache(maxsize=16)
def _fit(lams: tuple[float, ...], fids: tuple[float, ...]) -> Curve:
    if len(lams) < MIN_RUNS_TO_FIT:
        return Curve(None, lams, fids)
    # scikit-learn takes about a second to import: only a race's decisions and reports need it.
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    kernel = ConstantKernel(1.0, (1e-2, 1e2)) * RBF(0.5, LENGTH_SCALE_DECADES) + WhiteKernel(1.0, (1e-2, 1e1))
    model = GaussianProcessRegressor(kernel, n_restarts_optimizer=_RESTARTS, random_state=0)
    values = np.asarray(fids, dtype=float)
    center, scale = float(values.mean()), float(values.std()) or 1.0

    with warnings.catch_warnings():
        # A parameter at its bound (a flat curve: no λ effect to find) is an answer, not a failure.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(np.log10(np.asarray(lams, dtype=float))[:, None], (values - center) / scale)
    return Curve(model, lams, fids, center, scale)
