"""bench/race.py counts false claims both ways, and its fast race is the product's race on the same world."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from lambda_search.metrics.stats import beyond_noise, judge
from lambda_search.sweep.race.rule import verdict_seed_count

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def bench_race():
    sys.path.insert(0, str(BENCH))  # bench/race.py imports its sibling bench/rivals.py
    try:
        spec = importlib.util.spec_from_file_location("bench_race", BENCH / "race.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_race"] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("bench_race", None)
        sys.path.remove(str(BENCH))


def verdict_claim(bench_race, paired: list[float]):
    interval, _ = judge(paired)
    return bench_race.claim(beyond_noise(interval), interval.mean)


def test_a_claim_either_way_is_counted(bench_race) -> None:
    claims = [verdict_claim(bench_race, paired) for paired in
              ([-10.0, -11.0, -9.0, -10.5], [10.0, 11.0, 9.0, 10.5], [5.0, -6.0, 4.0, -3.0], [-9.0, -10.0, -11.0])]
    assert claims == ["lower", "higher", None, "lower"]
    assert bench_race.count_claims(claims) == (2, 1)


def test_a_flat_world_counts_higher_claims_too(bench_race) -> None:
    """On a flat curve with no seed or run noise but λ = 0's, every verdict that claims is false: both ways counted."""
    noise = bench_race.Noise(seed_sd=0.0, noise_sd=5.0)

    def fixed_verdict(world, seed: int):
        paired = [world.fid(1e-3, s) - world.fid(0.0, s) for s in range(3)]
        return bench_race.Outcome(1e-3, verdict_claim(bench_race, paired), 6)

    tally = bench_race.measure(fixed_verdict, noise, effect=0.0, width=0.5, studies=60)
    assert tally.lower > 0 and tally.higher > 0
    assert tally.rate(tally.lower + tally.higher)[0] == (tally.lower + tally.higher) / 60


@pytest.mark.parametrize(("n_trials", "requested"), [(20, 0), (28, 0), (28, 10)])
def test_the_fast_race_is_the_products_race(bench_race, n_trials: int, requested: int) -> None:
    """sized_race chooses and claims as the product's next_run/verdict loop on one world, at its verdict seeds."""
    noise = bench_race.PRESETS["gpu-finding"][1]()

    def world():
        return bench_race.World(noise, 7.57, 0.5, np.random.default_rng(n_trials))

    assert (bench_race.sized_race(world(), n_trials, n_trials, verdict_seed_count(n_trials, requested))
            == bench_race.race(world(), n_trials, n_trials, requested))
