"""The race against a sweep, a sweep + confirm, Optuna TPE and SMAC3, on simulated noisy FID(λ, seed).

The simulator: FID(λ, seed) = F0 − effect · bump(log10 λ) + u_seed + e_{λ,seed}, with
bump a Gaussian of WIDTH decades around an optimum drawn log-uniformly in the range
(bump = 0 for λ = 0), u_seed ~ N(0, seed_sd) shared by every λ of one seed, and
e ~ N(0, noise_sd), fixed per (λ, seed): re-training a run repeats it, as on the CPU.
The noise (seed_sd, noise_sd) comes from a named preset (`PRESETS`, --noise): the GPU
finding (docs/results/finding.db), the CPU races (docs/results/finding-cpu.db), or the
quickstart measurement of issue 19 (live or EMA generator). The effect is the GPU
finding's best confirmed λ's paired difference to λ = 0 (7.57 FID) unless --effect.

Claims are the product's: a verdict "beyond noise" (`metrics.stats.beyond_noise`, one rule
for the race and `confirm`) says λ scores "lower" or "higher" than λ = 0 by the sign of
its difference. Power: "lower" claims when the effect is real. False claims: claims either
way on a flat curve (effect 0), counted in both directions and in total.

Strategies, each over the same simulated studies:
  (a) sweep: 16 λ from a scrambled Sobol sequence (as QMCSampler), every run with the
      study seed (as `run` does), plus one λ = 0 control with that seed; picks the best
      run; claims "beats the control" when the best run's FID is below the control's.
  (b) sweep + `confirm --top 3 --seeds k`, as `confirm` runs: the top 3 and λ = 0 on k
      fresh seeds (never the sweep's); picks the best mean; claims by `stats.paired_tests`
      (the rule at m = 3). k = 7 is confirm's default for 3 λ, k = 3 its least.
  (c) the race (`lambda_search.sweep.race.rule`), proposals from the same Sobol sequence;
      picks the incumbent; claims by its verdict on the fresh seeds: the fixed quarter of
      the budget, or --verdict-seeds k beside it (the search gets what is left).
  (d) the race with SMAC-style intensification (--intensified), which the race does not
      do: the last search runs re-train the incumbent on new seeds, each paired with a
      λ = 0 run that measures the seed's effect; 3 seeds for the incumbent.
  (e) Optuna TPE best-run and (f) SMAC3's HPO facade, at the race's budgets
      (bench/rivals.py), each claiming as (a) does.

    PYTHONPATH=. python bench/race.py [--studies 500] [--noise gpu-finding cpu-races]
        [--budgets 20 28] [--verdict-seeds 10] [--rivals tpe smac] [--width 0.5]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import optuna
import rivals
from scipy.stats import qmc

from lambda_search.metrics.curve import fit_curve
from lambda_search.metrics.stats import beyond_noise, differences, judge, paired_tests
from lambda_search.names import CONTROL, PARAM, control_name
from lambda_search.sweep.race.rule import (
    SEARCH,
    VERDICT,
    VERDICT_SEED_OFFSET,
    Done,
    Propose,
    Run,
    Wait,
    next_run,
    search_budget,
    standing,
    verdict,
    verdict_seed_count,
    verdict_seeds,
)

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"
FINDING, FINDING_CPU = RESULTS / "finding.db", RESULTS / "finding-cpu.db"
LOW, HIGH = 1e-4, 1e-2
F0 = 90.0
# The quickstart's 8 paired seeds (issue 19): live difference sd 11.0, single-FID sd 23.3; EMA difference sd 5.5–6.4.
QUICKSTART_DIFFERENCE_SD, QUICKSTART_SINGLE_SD, QUICKSTART_EMA_DIFFERENCE_SD = 11.0, 23.3, 6.0

Claim = Literal["lower", "higher"] | None


@dataclass(frozen=True)
class Noise:
    seed_sd: float
    noise_sd: float

    @property
    def difference_sd(self) -> float:
        """The sd of a paired difference λ − λ = 0 on one seed: the seed's effect cancels, two residuals remain."""
        return math.sqrt(2) * self.noise_sd


def anova(tables: list[np.ndarray]) -> Noise:
    """Seed and residual sd pooled over λ × seed tables (two-way ANOVA without replication)."""
    residual_ss = residual_df = seed_excess = 0.0
    for table in tables:
        n_lams, n_seeds = table.shape
        grand = table.mean()
        rows, cols = table.mean(axis=1, keepdims=True), table.mean(axis=0, keepdims=True)
        residuals = table - rows - cols + grand
        df = (n_lams - 1) * (n_seeds - 1)
        seed_ms = n_lams * float(((cols - grand) ** 2).sum()) / (n_seeds - 1)
        residual_ss += float((residuals**2).sum())
        residual_df += df
        seed_excess += (seed_ms - float((residuals**2).sum()) / df) / n_lams
    return Noise(seed_sd=math.sqrt(max(seed_excess / len(tables), 0.0)), noise_sd=math.sqrt(residual_ss / residual_df))


def _fids(storage: str, name: str, role: str | None = None) -> dict[float, dict[int, float]]:
    fids: dict[float, dict[int, float]] = {}
    for trial in optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False):
        if trial.value is not None and (role is None or trial.user_attrs.get("role") == role):
            fids.setdefault(float(trial.params[PARAM]), {})[int(trial.user_attrs["seed"])] = float(trial.value)
    return fids


def _table(fids: dict[float, dict[int, float]]) -> np.ndarray:
    lams = sorted(fids)  # λ = 0 first
    seeds = sorted(set.intersection(*(set(by_seed) for by_seed in fids.values())))
    return np.array([[fids[lam][s] for s in seeds] for lam in lams])


def confirm_tables(path: Path) -> list[np.ndarray]:
    """Each `<name>.confirm` study's λ × seed FIDs (row 0: λ = 0)."""
    storage = f"sqlite:///{path}"
    return [_table(_fids(storage, name)) for name in optuna.get_all_study_names(storage) if name.endswith(".confirm")]


def verdict_tables(path: Path) -> list[np.ndarray]:
    """Each race's verdict runs, λ = 0 (from `<name>.control`) and the incumbent × the fresh seeds."""
    storage = f"sqlite:///{path}"
    names = optuna.get_all_study_names(storage)
    return [_table(_fids(storage, name, VERDICT) | _fids(storage, control_name(name), VERDICT))
            for name in names if control_name(name) in names]


def finding_effect(path: Path = FINDING) -> float:
    """The GPU finding's best confirmed λ's mean paired difference to λ = 0 (optimistic: it is the selected one)."""
    return max(float((table[0] - table[i]).mean()) for table in confirm_tables(path) for i in range(1, len(table)))


def measured(difference_sd: float, single_sd: float) -> Noise:
    """Noise from a measured paired-difference sd and single-FID sd: residual sd d/√2, seed sd the rest of one FID's."""
    noise_sd = difference_sd / math.sqrt(2)
    return Noise(seed_sd=math.sqrt(single_sd**2 - noise_sd**2), noise_sd=noise_sd)


# Each preset: its source in words, and how its noise is had.
PRESETS: dict[str, tuple[str, Callable[[], Noise]]] = {
    "gpu-finding": ("docs/results/finding.db, two-way λ × seed ANOVA of both `.confirm` studies "
                    "(4 λ × 6 seeds, pooled)",
                    lambda: anova(confirm_tables(FINDING))),
    "cpu-races": ("docs/results/finding-cpu.db, the same ANOVA of both races' verdict runs (incumbent and λ = 0 "
                  "× 3 fresh seeds, pooled)", lambda: anova(verdict_tables(FINDING_CPU))),
    "cpu-live": (f"issue 19, quickstart on 8 paired seeds, live generator: difference sd "
                 f"{QUICKSTART_DIFFERENCE_SD}, single-FID sd {QUICKSTART_SINGLE_SD}",
                 lambda: measured(QUICKSTART_DIFFERENCE_SD, QUICKSTART_SINGLE_SD)),
    "cpu-ema": (f"issue 19, quickstart on 8 paired seeds, EMA 0.95–0.98: difference sd 5.5–6.4, taken as "
                f"{QUICKSTART_EMA_DIFFERENCE_SD}; seed sd as the live generator's (the EMA single-FID sd was not "
                "reported)",
                lambda: Noise(measured(QUICKSTART_DIFFERENCE_SD, QUICKSTART_SINGLE_SD).seed_sd,
                              QUICKSTART_EMA_DIFFERENCE_SD / math.sqrt(2))),
}


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
    claim: Claim
    runs: int


def claim(beyond: bool, difference: float) -> Claim:
    """What a verdict says: nothing, or that λ scores "lower" (better) or "higher" than λ = 0 beyond noise."""
    if not beyond:
        return None
    return "lower" if difference < 0 else "higher"


def plain_sweep(world: World, n: int, seed: int) -> Outcome:
    lams = sobol(n, seed)
    best = min(lams, key=lambda lam: world.fid(lam, 0))
    return Outcome(best, "lower" if world.fid(best, 0) < world.fid(CONTROL, 0) else None, n + 1)


def sweep_confirm(world: World, n: int, seed: int, seeds: int, top: int = 3) -> Outcome:
    lams = sobol(n, seed)
    tops = sorted(lams, key=lambda lam: world.fid(lam, 0))[:top]
    fresh = range(1, seeds + 1)
    control = [world.fid(CONTROL, s) for s in fresh]
    tests = dict(zip(tops, paired_tests([([world.fid(lam, s) for s in fresh], control) for lam in tops]), strict=True))
    best = min(tops, key=lambda lam: statistics.fmean(world.fid(lam, s) for s in fresh))
    test = tests[best]
    return Outcome(best, claim(test.beyond_noise, test.difference.mean), n + 1 + (top + 1) * seeds)


def race(world: World, n_trials: int, seed: int, verdict_count: int = 0) -> Outcome:
    """The product's race (`next_run`, `verdict`) as `race` runs it; `verdict_count` as ``[study] verdict_seeds``.

    It refits the curve on every call in the verdict phase: `sized_race` is the same race, fast.
    """
    proposals = iter(sobol(4 * n_trials, seed))
    runs: list[Run] = []
    while not isinstance(action := next_run(runs, n_trials, 0, verdict_count), Done):
        assert not isinstance(action, Wait)
        lam = next(proposals) if isinstance(action, Propose) else action.lam
        role = SEARCH if isinstance(action, Propose) else action.role
        runs.append(Run(lam, action.seed, role, world.fid(lam, action.seed)))
    result = verdict(runs, n_trials, 0, verdict_count)
    assert result is not None
    return Outcome(result.lam, claim(result.beyond_noise, result.difference), len(runs))


def sized_race(world: World, n_trials: int, seed: int, seeds: int) -> Outcome:
    """The race with `seeds` verdict seeds instead of the fixed quarter; the search has what is left.

    The product's parts: λ = 0 then Sobol λ on the search seed 0, `standing`'s incumbent, and
    the rule (`judge`, `beyond_noise`) on the paired differences over fresh seeds.
    """
    runs = [Run(lam, 0, SEARCH, world.fid(lam, 0)) for lam in [CONTROL, *sobol(n_trials - 2 * seeds - 1, seed)]]
    lam = standing(runs).incumbent
    assert lam is not None
    # Drawn in the order `next_run` trains them (the incumbent, then λ = 0, seed by seed): the same world's runs.
    fresh = range(VERDICT_SEED_OFFSET, VERDICT_SEED_OFFSET + seeds)
    pairs = [(world.fid(lam, s), world.fid(CONTROL, s)) for s in fresh]
    interval, _ = judge(differences([fid for fid, _ in pairs], [control for _, control in pairs]))
    return Outcome(lam, claim(beyond_noise(interval), interval.mean), n_trials)


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
    interval, _ = judge(differences([world.fid(chosen, s) for s in fresh], [world.fid(CONTROL, s) for s in fresh]))
    return Outcome(chosen, claim(beyond_noise(interval), interval.mean), n_trials)


def tpe(world: World, n: int, seed: int) -> Outcome:
    return Outcome(*rivals.tpe_best_run(world, n, seed, LOW, HIGH), n)


def smac(world: World, n: int, seed: int) -> Outcome:
    return Outcome(*rivals.smac_incumbent(world, n, seed, LOW, HIGH), n)


Strategy = Callable[[World, int], Outcome]


@dataclass(frozen=True)
class Tally:
    """A strategy over `studies` simulated studies: its regrets, its claims each way, its mean runs."""

    regrets: list[float]
    lower: int
    higher: int
    runs: float

    @property
    def studies(self) -> int:
        return len(self.regrets)

    def rate(self, count: int) -> tuple[float, float]:
        """A count as a rate over the studies, and its binomial standard error."""
        rate = count / self.studies
        return rate, math.sqrt(rate * (1 - rate) / self.studies)

    def median_regret(self) -> tuple[float, float]:
        """The median regret and its bootstrap standard error (1,000 resamples)."""
        values = np.array(self.regrets)
        resampled = np.random.default_rng(0).choice(values, size=(1000, len(values)))
        return float(np.median(values)), float(np.median(resampled, axis=1).std())


def count_claims(claims: list[Claim]) -> tuple[int, int]:
    """How many say "lower" and how many "higher": on a flat curve both are false claims."""
    return claims.count("lower"), claims.count("higher")


def measure(strategy: Strategy, noise: Noise, effect: float, width: float, studies: int) -> Tally:
    regrets, claims, runs = [], [], []
    for index in range(studies):
        world = World(noise, effect, width, np.random.default_rng(index))
        outcome = strategy(world, index)
        regrets.append(world.true_fid(outcome.chosen) - world.best_true_fid())
        claims.append(outcome.claim)
        runs.append(outcome.runs)
    lower, higher = count_claims(claims)
    return Tally(regrets, lower, higher, float(np.mean(runs)))


def strategies(budgets: list[int], verdict_counts: list[int], rival_names: list[str],
               intensified: bool) -> dict[str, Strategy]:
    lineup: dict[str, Strategy] = {
        "(a) sweep 16 + control, best run vs λ = 0": lambda world, seed: plain_sweep(world, 16, seed),
        "(b) sweep 16 + confirm top 3 x 3 seeds": lambda world, seed: sweep_confirm(world, 16, seed, 3),
        "(b) sweep 16 + confirm top 3 x 7 seeds": lambda world, seed: sweep_confirm(world, 16, seed, 7),
    }
    for n in budgets:
        for count in dict.fromkeys([verdict_seed_count(n), *verdict_counts]):
            quarter = ", the fixed quarter" if count == verdict_seed_count(n) else ""
            if n - 2 * count >= 2:  # λ = 0 and one λ at least
                lineup[f"(c) race, {n} runs ({count} verdict seeds{quarter})"] = (
                    lambda world, seed, n=n, count=count: sized_race(world, n, seed, count))
        if intensified:
            lineup[f"(d) race + incumbent on 3 seeds, {n} runs"] = (
                lambda world, seed, n=n: intensified_race(world, n, seed))
        if "tpe" in rival_names:
            lineup[f"(e) Optuna TPE, best run vs λ = 0, {n} runs"] = lambda world, seed, n=n: tpe(world, n, seed)
        if "smac" in rival_names:
            lineup[f"(f) SMAC3 HPO facade, incumbent vs λ = 0, {n} runs"] = (
                lambda world, seed, n=n: smac(world, n, seed))
    return lineup


def percent(rate: tuple[float, float]) -> str:
    return f"{rate[0]:.1%} ± {rate[1]:.1%}"


def row(name: str, effective: Tally, flat: Tally) -> str:
    """A markdown row: runs, median regret, power (claims of "lower" at the effect), false claims on the flat curve."""
    regret, regret_se = effective.median_regret()
    return (f"| {name} | {effective.runs:.0f} | {regret:.2f} ± {regret_se:.2f} "
            f"| {percent(effective.rate(effective.lower))} | {percent(flat.rate(flat.lower))} "
            f"| {percent(flat.rate(flat.higher))} | {percent(flat.rate(flat.lower + flat.higher))} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=500)
    parser.add_argument("--width", type=float, default=0.5, help="the curve's width in decades of λ")
    parser.add_argument("--noise", nargs="+", choices=sorted(PRESETS), default=["gpu-finding", "cpu-races"],
                        help="noise presets, each from a named measurement")
    parser.add_argument("--effect", type=float, help="the true effect in FID (default: the GPU finding's, fitted)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[20, 28],
                        help="runs per study of the race and its rivals")
    parser.add_argument("--verdict-seeds", type=int, nargs="*", default=[10],
                        help="verdict seed counts tried beside the fixed quarter")
    parser.add_argument("--rivals", nargs="*", choices=["tpe", "smac"], default=["tpe", "smac"])
    parser.add_argument("--intensified", action="store_true", help="also (d), the race with intensification")
    parser.add_argument("--only", nargs="*", default=[],
                        help="run only the strategies whose names contain one of these")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if "smac" in args.rivals and not rivals.smac_available():
        raise SystemExit(rivals.SMAC_HINT)
    effect = args.effect if args.effect is not None else finding_effect()
    lineup = {name: strategy for name, strategy in strategies(args.budgets, args.verdict_seeds, args.rivals,
                                                               args.intensified).items()
              if not args.only or any(part in name for part in args.only)}
    print(f"{args.studies} studies per row, effect {effect:.2f} FID, curve width {args.width} decades, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    for preset in args.noise:
        source, load = PRESETS[preset]
        noise = load()
        print(f"\n{preset}: {source}\nseed sd {noise.seed_sd:.2f}, residual sd {noise.noise_sd:.2f}, "
              f"paired-difference sd {noise.difference_sd:.2f}\n")
        print("| strategy | runs | median regret | power | false lower | false higher | false claims |")
        print("|---|---|---|---|---|---|---|")
        for name, strategy in lineup.items():
            started = time.perf_counter()
            effective = measure(strategy, noise, effect, args.width, args.studies)
            flat = measure(strategy, noise, 0.0, args.width, args.studies)
            print(row(name, effective, flat), flush=True)
            print(f"  {name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
