"""The race: which training run to do next, decided from the runs so far. Pure: no torch, no Optuna.

A GAN's FID moves between seeds about as much as between neighbouring λ, so one run
per λ mostly ranks seeds. The race treats the seed as a first-class dimension, as
SMAC's intensification and irace's racing treat problem instances: every comparison
is made on the same seeds (paired), and only promising λ earn more seeds.

Search phase (``role = "search"``), on the search seeds ``seed, seed + 1, …``:

- A new λ (a *challenger*, proposed by the study's sampler) first runs on the first
  search seed.
- It earns the next seed while its mean FID on the seeds it holds is no worse than the
  incumbent's mean on the same seeds (SMAC's rule). Once worse, it is *rejected*.
- A challenger that holds as many seeds as the incumbent, with a mean no worse, *is*
  the incumbent: the incumbent is the λ holding the most seeds, ties going to the lower
  mean, then to the earlier λ. The first λ is the first incumbent.
- The incumbent gains a seed each time two more challengers have entered the race
  (``incumbent seeds ≥ 1 + challengers // 2``), up to 3 seeds (SMAC's default
  ``max_config_calls``), so that replacing it grows harder as evidence accumulates, while
  runs past that buy more λ rather than more seeds (more seeds did not lower the regret in
  ``bench/race.py``); never as the search's last run, which would leave that seed without
  its λ = 0 run.
- λ = 0 runs on every seed the incumbent holds (or is running): every difference to
  λ = 0 is paired.

Priority of the next search run: λ = 0's missing seeds, then an unrejected challenger's
next seed (the one closest to a decision first), then the incumbent's next seed, then
a new challenger. A λ with a run in progress is skipped (it is *busy*), so several
workers never wait on each other: the spare ones start new challengers. One worker makes
exactly the sequential race; N workers make the same rule's race with up to N runs in
flight, which may propose a few more challengers.

Verdict phase (``role = "verdict"``): when the search runs number ``n_trials`` minus the
verdict's runs, and none is still running, the incumbent is final. It and λ = 0 then run
on `verdict_seeds` fresh seeds, ``seed + VERDICT_SEED_OFFSET + i``, never used in the
search, so the selection cannot flatter the winner. The one pre-registered comparison is
the paired difference incumbent − λ = 0 on those seeds: its Student-t interval decides
("beyond noise" only when it excludes 0), and the exact Wilcoxon signed-rank p is shown
beside it. One comparison: no multiple-comparison correction is owed.

Budget: the verdict takes a quarter of ``n_trials`` (two runs per fresh seed, at least
3 seeds), the search the rest. A quarter because the race's search already pays for
paired λ = 0 runs, while with fewer than 3 fresh seeds no interval is worth printing.

A diverged run counts as the worst FID (a loss): an infinite FID in the search (the λ
is rejected unless its rival diverged too), the study's worst finite FID in the verdict.

Deterministic: the same runs in the same order give the same next run.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from lambda_search.metrics.stats import Interval, differences, mean_interval, paired_difference, wilcoxon_p_value
from lambda_search.names import CONTROL

SEARCH: Final = "search"
VERDICT: Final = "verdict"
Role = Literal["search", "verdict"]
# Verdict seeds start this far above the study seed: far beyond any search seed.
VERDICT_SEED_OFFSET = 10_000
# The share of n_trials the verdict gets, and its floor in fresh seeds.
VERDICT_SHARE = 0.25
MIN_VERDICT_SEEDS = 3
# The incumbent gains a seed each time this many more challengers have entered the race.
CHALLENGERS_PER_INCUMBENT_SEED = 2
# ... up to this many seeds (SMAC's max_config_calls): past it, runs buy more λ, not more seeds.
MAX_INCUMBENT_SEEDS = 3
# The smallest budget: the verdict's runs plus one challenger and its λ = 0 run.
MIN_RUNS = 2 * MIN_VERDICT_SEEDS + 2


@dataclass(frozen=True)
class Run:
    """One training run of the race: finished (`fid` set, ``math.inf`` if it diverged) or in progress (None)."""

    lam: float
    seed: int
    role: Role
    fid: float | None = None

    @property
    def finished(self) -> bool:
        return self.fid is not None


@dataclass(frozen=True)
class Propose:
    """Train a new λ from the sampler on `seed`."""

    seed: int


@dataclass(frozen=True)
class Repeat:
    """Train a λ already in the race (or λ = 0) on `seed`."""

    lam: float
    seed: int
    role: Role


@dataclass(frozen=True)
class Wait:
    """Nothing can be decided until the runs in progress finish."""


@dataclass(frozen=True)
class Done:
    """Every run of the budget exists (some may still be in progress)."""


Action = Propose | Repeat | Wait | Done


def verdict_seed_count(n_trials: int) -> int:
    """Fresh seeds of the verdict: a quarter of the budget, two runs each, at least 3."""
    return max(MIN_VERDICT_SEEDS, round(VERDICT_SHARE * n_trials / 2))


def search_budget(n_trials: int) -> int:
    """Runs of the search phase: what the verdict leaves."""
    return n_trials - 2 * verdict_seed_count(n_trials)


def verdict_seeds(seed: int, n_trials: int) -> list[int]:
    return [seed + VERDICT_SEED_OFFSET + index for index in range(verdict_seed_count(n_trials))]


@dataclass(frozen=True)
class Standing:
    """The search so far: each λ's FIDs by seed (finished search runs), who is busy, who leads."""

    fids: dict[float, dict[int, float]]
    # λ > 0 in the order they entered the race.
    challengers: list[float]
    busy: frozenset[float]
    incumbent: float | None

    def seeds(self, lam: float) -> dict[int, float]:
        return self.fids.get(lam, {})

    def alive(self, lam: float) -> bool:
        """Not rejected: its mean on its seeds is no worse than the incumbent's on the same seeds."""
        if self.incumbent is None or lam == self.incumbent:
            return True
        own = self.seeds(lam)
        leader = self.seeds(self.incumbent)
        shared = [seed for seed in own if seed in leader]
        if len(shared) < len(own):
            return True  # it ran seeds the incumbent has not: not comparable yet
        return _mean([own[s] for s in shared]) <= _mean([leader[s] for s in shared])


def standing(runs: Sequence[Run]) -> Standing:
    """Who holds which seeds, and the incumbent, from the search runs in the order they were made."""
    fids: dict[float, dict[int, float]] = {}
    challengers: list[float] = []
    busy: set[float] = set()
    for run in runs:
        if run.role != SEARCH:
            continue
        if run.lam != CONTROL and run.lam not in challengers:
            challengers.append(run.lam)
        if run.fid is None:
            busy.add(run.lam)
        else:
            fids.setdefault(run.lam, {})[run.seed] = run.fid
    scored = [lam for lam in challengers if fids.get(lam)]
    incumbent = min(scored, key=lambda lam: (-len(fids[lam]), _mean(list(fids[lam].values())),
                                             challengers.index(lam)), default=None)
    return Standing(fids, challengers, frozenset(busy), incumbent)


def next_run(runs: Sequence[Run], n_trials: int, seed: int) -> Action:
    """The next run of a race of `n_trials` runs whose search seeds start at `seed`.

    Args:
        runs: every run made so far (finished or in progress, failed ones left out),
            in the order they were started.
    """
    made = [run for run in runs if run.role == SEARCH]
    if len(made) < search_budget(n_trials):
        return _next_search_run(standing(runs), runs, seed, search_budget(n_trials) - len(made))
    if any(not run.finished for run in made):
        return Wait()
    incumbent = standing(runs).incumbent
    if incumbent is None:
        return Wait()  # unreachable with a budget of at least MIN_RUNS: every search run finished
    present = {(run.lam, run.seed) for run in runs if run.role == VERDICT}
    for fresh in verdict_seeds(seed, n_trials):
        for lam in (incumbent, CONTROL):
            if (lam, fresh) not in present:
                return Repeat(lam, fresh, VERDICT)
    return Done()


def _next_search_run(state: Standing, runs: Sequence[Run], seed: int, left: int) -> Action:
    started = {(run.lam, run.seed) for run in runs if run.role == SEARCH}
    incumbent = state.incumbent
    if incumbent is not None:
        held = sorted(s for lam, s in started if lam == incumbent)
        for needed in held:
            if (CONTROL, needed) not in started:
                return Repeat(CONTROL, needed, SEARCH)
        leader_seeds = len(state.seeds(incumbent))
        contenders = [lam for lam in state.challengers if lam != incumbent and lam not in state.busy
                      and len(state.seeds(lam)) < leader_seeds and state.alive(lam)]
        if contenders:
            closest = max(contenders, key=lambda lam: (len(state.seeds(lam)), -state.challengers.index(lam)))
            return Repeat(closest, seed + len(state.seeds(closest)), SEARCH)
        due = min(MAX_INCUMBENT_SEEDS, 1 + len(state.challengers) // CHALLENGERS_PER_INCUMBENT_SEED)
        # A new incumbent seed needs its λ = 0 run too: two runs of the budget, or neither.
        if incumbent not in state.busy and leader_seeds < due and left >= 2:
            return Repeat(incumbent, seed + leader_seeds, SEARCH)
    return Propose(seed)


@dataclass(frozen=True)
class Verdict:
    """The pre-registered comparison: the incumbent against λ = 0 on the fresh verdict seeds."""

    lam: float
    mean_fid: float
    control_mean_fid: float
    # incumbent − λ = 0, seed by seed: negative means the incumbent scores the lower (better) FID.
    difference: float
    low: float
    high: float
    wilcoxon_p: float
    seeds: int
    verdict_seeds: list[int]
    # Each verdict seed's FID (a diverged run as the study's worst FID), for the incumbent and λ = 0.
    fids: list[float]
    control_fids: list[float]

    @property
    def beyond_noise(self) -> bool:
        return self.low > 0 or self.high < 0


def verdict(runs: Sequence[Run], n_trials: int, seed: int) -> Verdict | None:
    """The verdict from the finished verdict runs; None until every one of them is finished."""
    incumbent = standing(runs).incumbent
    fids = {(run.lam, run.seed): run.fid for run in runs if run.role == VERDICT and run.fid is not None}
    fresh = verdict_seeds(seed, n_trials)
    if incumbent is None or any((lam, s) not in fids for s in fresh for lam in (incumbent, CONTROL)):
        return None
    worst = max((run.fid for run in runs if run.fid is not None and math.isfinite(run.fid)), default=0.0)

    def scored(lam: float) -> list[float]:
        values = [fids[lam, s] for s in fresh]
        return [value if math.isfinite(value) else worst for value in values]

    candidate, control = scored(incumbent), scored(CONTROL)
    interval = paired_difference(candidate, control)
    return Verdict(incumbent, statistics.fmean(candidate), statistics.fmean(control), interval.mean,
                   interval.low, interval.high, wilcoxon_p_value(differences(candidate, control)), len(fresh), fresh,
                   candidate, control)


def verdict_line(result: Verdict | None) -> str:
    """One line: the λ, its mean FID, and the difference to λ = 0 with its interval; or why there is none."""
    if result is None:
        return "race verdict: not yet (the verdict runs on fresh seeds are not all finished)"
    head = (f"race verdict: λ = {result.lam:.6g}, mean FID {result.mean_fid:.4f} on {result.seeds} fresh seeds; "
            f"minus λ = 0: {result.difference:+.4f} FID (95% CI [{result.low:.4f}, {result.high:.4f}], "
            f"Wilcoxon p = {result.wilcoxon_p:.3g})")
    if not result.beyond_noise:
        return f"{head}: no effect detectable with this budget"
    better = "lower" if result.difference < 0 else "higher"
    return f"{head}: {better} than λ = 0 beyond noise"


@dataclass(frozen=True)
class RaceSummary:
    """What a report shows of a race: each λ's search FIDs, the incumbent's path, the verdict line."""

    # λ = 0 first, then each λ in the order it entered the race, with its mean FID over its search seeds.
    lambdas: list[tuple[float, Interval]]
    # The incumbent after each finished search run, repeats left out: the λ the race held, in turn.
    path: list[float]
    verdict: str


def summarize(runs: Sequence[Run], n_trials: int, seed: int) -> RaceSummary:
    """The race so far: a diverged run counts as the worst finite FID of the study in each λ's mean."""
    worst = max((run.fid for run in runs if run.fid is not None and math.isfinite(run.fid)), default=0.0)
    state = standing(runs)
    lambdas = [(lam, mean_interval([fid if math.isfinite(fid) else worst for fid in state.seeds(lam).values()]))
               for lam in (CONTROL, *state.challengers) if state.seeds(lam)]
    path: list[float] = []
    for index in range(len(runs)):
        incumbent = standing(runs[:index + 1]).incumbent
        if incumbent is not None and (not path or path[-1] != incumbent):
            path.append(incumbent)
    return RaceSummary(lambdas, path, verdict_line(verdict(runs, n_trials, seed)))


def _mean(values: list[float]) -> float:
    return math.inf if any(math.isinf(v) for v in values) else statistics.fmean(values)
