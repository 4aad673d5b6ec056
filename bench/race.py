"""The race against a sweep and a sweep + confirm, on simulated noisy FID(λ, seed).

The simulator: FID(λ, seed) = F0 − effect · bump(log10 λ) + u_seed + e_{λ,seed}, with
bump a Gaussian of WIDTH decades around an optimum drawn log-uniformly in the range
(bump = 0 for λ = 0), u_seed ~ N(0, seed_sd) shared by every λ of one seed, and
e ~ N(0, noise_sd), fixed per (λ, seed): re-training a run repeats it, as on the CPU.
Its three parameters are fitted to docs/results/finding.db: seed_sd and noise_sd from
a two-way (λ × seed) ANOVA of the `<name>.confirm` studies, effect from the best
confirmed λ's paired difference to λ = 0.

Strategies, each over the same simulated studies:
  (a) sweep: 16 λ from a scrambled Sobol sequence (as QMCSampler), every run with the
      study seed (as `run` does), plus one λ = 0 control with that seed; picks the best
      run; claims "beats the control" when the best run's FID is below the control's.
  (b) sweep + `confirm --top 3 --seeds k`, as `confirm` runs today: the top 3 and λ = 0
      on k fresh seeds (never the sweep's); picks the best mean; claims when the
      Holm-adjusted exact Wilcoxon and the Bonferroni t interval agree
      (`stats.paired_tests`). k = 7 is confirm's default for 3 λ, k = 3 its least.
  (c) the race (`lambda_search.sweep.race`), proposals from the same Sobol sequence;
      picks the incumbent; claims when the verdict's interval lies below 0.
  (d) the race with SMAC-style intensification, which the race does not do: the last
      search runs re-train the incumbent on new seeds, each paired with a λ = 0 run that
      measures the seed's effect (subtracted before the fit); 3 seeds for the incumbent.

    PYTHONPATH=. python bench/race.py [--studies 500] [--width 0.5]
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
from scipy.stats import qmc

from lambda_search.metrics.curve import fit_curve
from lambda_search.metrics.stats import excludes_zero, paired_difference, paired_tests
from lambda_search.names import CONTROL
from lambda_search.sweep.race import SEARCH, Done, Propose, Run, Wait, next_run, search_budget, verdict, verdict_seeds

FINDING = Path(__file__).resolve().parent.parent / "docs" / "results" / "finding.db"
LOW, HIGH = 1e-4, 1e-2
F0 = 90.0


@dataclass(frozen=True)
class Noise:
    seed_sd: float
    noise_sd: float
    effect: float


def fit(path: Path = FINDING) -> Noise:
    """Seed and residual sd pooled over the confirmations (two-way ANOVA, no replication); the best effect."""
    storage = f"sqlite:///{path}"
    residual_ss = residual_df = seed_ms_excess = 0.0
    seed_terms = 0
    effects = []
    for name in optuna.get_all_study_names(storage):
        if not name.endswith(".confirm"):
            continue
        fids: dict[float, dict[int, float]] = {}
        for trial in optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False):
            fids.setdefault(float(trial.params["lambda"]), {})[int(trial.user_attrs["seed"])] = float(trial.value)
        lams, seeds = sorted(fids), sorted(next(iter(fids.values())))
        table = np.array([[fids[lam][s] for s in seeds] for lam in lams])  # λ × seed
        grand = table.mean()
        rows, cols = table.mean(axis=1, keepdims=True), table.mean(axis=0, keepdims=True)
        residuals = table - rows - cols + grand
        df = (len(lams) - 1) * (len(seeds) - 1)
        residual_ms = float((residuals**2).sum()) / df
        seed_ms = len(lams) * float(((cols - grand) ** 2).sum()) / (len(seeds) - 1)
        residual_ss += float((residuals**2).sum())
        residual_df += df
        seed_ms_excess += (seed_ms - residual_ms) / len(lams)
        seed_terms += 1
        control = table[lams.index(CONTROL)]
        effects.append(max(float((control - table[i]).mean()) for i, lam in enumerate(lams) if lam != CONTROL))
    return Noise(seed_sd=math.sqrt(max(seed_ms_excess / seed_terms, 0.0)),
                 noise_sd=math.sqrt(residual_ss / residual_df), effect=max(effects))


class World:
    """One simulated study: its true curve, its seeds' effects, and each run's noise, drawn once."""

    def __init__(self, noise: Noise, effect: float, width: float, rng: np.random.Generator) -> None:
        self.noise, self.effect, self.width = noise, effect, width
        self.optimum = rng.uniform(math.log10(LOW), math.log10(HIGH))
        self.rng = np.random.default_rng(rng.integers(2**63))
        self.seed_effects: dict[int, float] = {}
        self.residuals: dict[tuple[float, int], float] = {}

    def true_fid(self, lam: float) -> float:
        if lam == CONTROL:
            return F0
        return F0 - self.effect * math.exp(-0.5 * ((math.log10(lam) - self.optimum) / self.width) ** 2)

    def best_true_fid(self) -> float:
        return F0 - self.effect

    def fid(self, lam: float, seed: int) -> float:
        if seed not in self.seed_effects:
            self.seed_effects[seed] = float(self.rng.normal(0, self.noise.seed_sd))
        if (lam, seed) not in self.residuals:
            self.residuals[lam, seed] = float(self.rng.normal(0, self.noise.noise_sd))
        return self.true_fid(lam) + self.seed_effects[seed] + self.residuals[lam, seed]


def sobol(count: int, seed: int) -> list[float]:
    """λ as QMCSampler proposes them: a scrambled Sobol sequence, log-uniform in [LOW, HIGH]."""
    # A power of 2 keeps Sobol's balance; the first `count` points are what the sampler asks first.
    points = qmc.Sobol(1, scramble=True, seed=seed).random_base2(math.ceil(math.log2(count)))[:count, 0]
    return [float(10 ** (math.log10(LOW) + p * (math.log10(HIGH) - math.log10(LOW)))) for p in points]


@dataclass(frozen=True)
class Outcome:
    chosen: float
    claims: bool
    runs: int


def plain_sweep(world: World, n: int, seed: int) -> Outcome:
    lams = sobol(n, seed)
    best = min(lams, key=lambda lam: world.fid(lam, 0))
    return Outcome(best, world.fid(best, 0) < world.fid(CONTROL, 0), n + 1)


def sweep_confirm(world: World, n: int, seed: int, seeds: int, top: int = 3) -> Outcome:
    lams = sobol(n, seed)
    tops = sorted(lams, key=lambda lam: world.fid(lam, 0))[:top]
    fresh = range(1, seeds + 1)
    control = [world.fid(CONTROL, s) for s in fresh]
    tests = dict(zip(tops, paired_tests([([world.fid(lam, s) for s in fresh], control) for lam in tops]), strict=True))
    best = min(tops, key=lambda lam: statistics.fmean(world.fid(lam, s) for s in fresh))
    test = tests[best]
    return Outcome(best, test.beyond_noise and test.difference.mean < 0, n + 1 + (top + 1) * seeds)


def race(world: World, n_trials: int, seed: int) -> Outcome:
    proposals = iter(sobol(4 * n_trials, seed))
    runs: list[Run] = []
    while not isinstance(action := next_run(runs, n_trials, 0), Done):
        assert not isinstance(action, Wait)
        lam = next(proposals) if isinstance(action, Propose) else action.lam
        role = SEARCH if isinstance(action, Propose) else action.role
        runs.append(Run(lam, action.seed, role, world.fid(lam, action.seed)))
    result = verdict(runs, n_trials, 0)
    assert result is not None
    return Outcome(result.lam, result.beyond_noise and result.difference < 0, len(runs))


def intensified_race(world: World, n_trials: int, seed: int, incumbent_seeds: int = 3) -> Outcome:
    """(d): the race's search, its last runs spent re-training the incumbent on paired new seeds."""
    extra = 2 * (incumbent_seeds - 1)
    lams = sobol(search_budget(n_trials) - 1 - extra, seed)
    adjusted = {lam: world.fid(lam, 0) for lam in lams}
    for new_seed in range(1, incumbent_seeds):
        incumbent = fit_curve(list(adjusted), list(adjusted.values())).best()
        # Each seed's run less that seed's effect, as its λ = 0 run measures it against seed 0.
        adjusted[incumbent] = statistics.fmean(
            world.fid(incumbent, s) - (world.fid(CONTROL, s) - world.fid(CONTROL, 0)) for s in range(new_seed + 1))
    chosen = fit_curve(list(adjusted), list(adjusted.values())).best()
    fresh = verdict_seeds(0, n_trials)
    difference = paired_difference([world.fid(chosen, s) for s in fresh], [world.fid(CONTROL, s) for s in fresh])
    return Outcome(chosen, excludes_zero(difference) and difference.mean < 0, n_trials)


Strategy = Callable[[World, int], Outcome]


def measure(strategy: Strategy, noise: Noise, effect: float, width: float, studies: int) -> dict[str, float]:
    regrets, claims, runs = [], 0, []
    for index in range(studies):
        world = World(noise, effect, width, np.random.default_rng(index))
        outcome = strategy(world, index)
        regrets.append(world.true_fid(outcome.chosen) - world.best_true_fid())
        claims += outcome.claims
        runs.append(outcome.runs)
    return {"median_regret": float(np.median(regrets)), "mean_regret": float(np.mean(regrets)),
            "claim_rate": claims / studies, "runs": float(np.mean(runs))}


RACE_BUDGETS = (14, 20, 28, 40, 56)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=500)
    parser.add_argument("--width", type=float, default=0.5, help="the curve's width in decades of λ")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    noise = fit()
    print(f"fitted to {FINDING.name}: seed sd {noise.seed_sd:.2f}, residual sd {noise.noise_sd:.2f}, "
          f"effect {noise.effect:.2f} FID (best confirmed λ vs λ = 0); curve width {args.width} decades")
    strategies: dict[str, Strategy] = {
        "(a) sweep 16 + control": lambda world, seed: plain_sweep(world, 16, seed),
        "(b) sweep 16 + confirm top 3 x 3 seeds": lambda world, seed: sweep_confirm(world, 16, seed, 3),
        "(b) sweep 16 + confirm top 3 x 7 seeds": lambda world, seed: sweep_confirm(world, 16, seed, 7),
    }
    for n_trials in RACE_BUDGETS:
        strategies[f"(c) race n_trials = {n_trials}"] = lambda world, seed, n=n_trials: race(world, n, seed)
    for n_trials in (20, 28, 40):
        strategies[f"(d) race + incumbent on 3 seeds, {n_trials}"] = (
            lambda world, seed, n=n_trials: intensified_race(world, n, seed))
    print(f"{'strategy':<40} {'runs':>5} {'median regret':>14} {'mean regret':>12} "
          f"{'power':>6} {'false claims (flat)':>20}")
    regrets: dict[str, tuple[float, float]] = {}
    for name, strategy in strategies.items():
        effective = measure(strategy, noise, noise.effect, args.width, args.studies)
        flat = measure(strategy, noise, 0.0, args.width, args.studies)
        regrets[name] = (effective["runs"], effective["median_regret"])
        print(f"{name:<40} {effective['runs']:5.1f} {effective['median_regret']:14.2f} "
              f"{effective['mean_regret']:12.2f} {effective['claim_rate']:6.1%} {flat['claim_rate']:20.1%}", flush=True)
    for name in [name for name in regrets if name.startswith("(b)")]:
        runs, regret = regrets[name]
        matching = [n for n in RACE_BUDGETS if regrets[f"(c) race n_trials = {n}"][1] <= regret]
        reach = f"{matching[0]} runs, {matching[0] / runs:.0%} of its {runs:.0f}" if matching else "no budget tried"
        print(f"race budget reaching {name[4:]}'s median regret {regret:.2f}: {reach}")


if __name__ == "__main__":
    main()
