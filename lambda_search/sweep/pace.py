"""Run k of N, and the time left at this worker's pace: one log line as each run starts.

A worker knows the study's budget and how many runs are finished (all workers together);
the time left is the runs still to start times the mean duration of the runs *this* worker
finished, so with several workers the study ends sooner than the line says.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class Pace:
    """The budget, how to count the study's finished runs, and the seconds of each run this worker finished."""

    budget: int
    finished: Callable[[], int]
    seconds: list[float] = field(default_factory=list)

    @contextlib.contextmanager
    def run(self, label: str, runs: int = 1) -> Iterator[None]:
        """Log the line of `runs` runs trained together (a fused job) as they start; time them if they end.

        A job that raises is not counted; a fused job counts as `runs` runs of its duration / `runs`.
        """
        log.info("%s", pace_line(self.finished(), self.budget, self.seconds, label, runs))
        started = time.monotonic()
        yield
        self.seconds += [(time.monotonic() - started) / runs] * runs


def pace_line(finished: int, budget: int, seconds: list[float], label: str, runs: int = 1) -> str:
    """E.g. "run 3 of 20 (trial 2, λ = 0.001); about 2 min 40 s left at 8.9 s a run (this worker's mean)"."""
    number = min(finished + 1, budget)
    last = min(finished + runs, budget)
    line = f"run {number} of {budget} ({label})" if last == number else f"runs {number}–{last} of {budget} ({label})"
    if not seconds:
        return f"{line}; time left: after this worker's first run"
    mean = statistics.fmean(seconds)
    left = max(budget - finished, 1) * mean  # this run included
    return f"{line}; about {duration(left)} left at {mean:.1f} s a run (this worker's mean)"


def duration(seconds: float) -> str:
    """Seconds as a person reads them: "45 s", "3 min 20 s", "2 h 5 min"."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"
