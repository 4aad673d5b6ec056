"""The race's rivals at equal runs, on the same simulated world as bench/race.py: Optuna TPE and SMAC3.

Both are run as a user of a plain sweep would run them: n − 1 runs of the tuner, plus one
λ = 0 run, and the claim "λ beats λ = 0" when the chosen λ's FID is below that λ = 0 run's on
the same seed (strategy (a)'s sentence; neither tool has a verdict of its own). Neither tool
ever says "higher", so their false claims are all "lower".

- TPE best-run: `optuna.samplers.TPESampler` (its defaults, seeded per study) proposes log λ;
  every run on the study seed 0, as `run` does; the best single run is chosen.
- SMAC3: `HyperparameterOptimizationFacade` with its default intensification
  (`max_config_calls = 3`: an incumbent is re-trained on up to 3 seeds, non-deterministic
  target); the chosen λ is SMAC's incumbent, its λ = 0 run on the incumbent's first seed.

SMAC is an optional bench dependency: ``pip install 'lambda-search[bench]'`` (smac 2.4.1 was
measured; it brings its random forest through scikit-learn, releases before it build pyrfr and
need ``apt-get install -y swig`` first).
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path
from typing import Protocol

import optuna

from lambda_search.names import CONTROL


class World(Protocol):
    """A simulated study (bench/race.py's World): the FID of λ trained on a seed."""

    def fid(self, lam: float, seed: int) -> float: ...


# (the λ chosen, the claim made: "lower" or None)
Choice = tuple[float, str | None]

SMAC_HINT = ("smac is not installed: pip install 'lambda-search[bench]' (older smac: apt-get install -y swig first), "
             "or --rivals tpe")


def smac_available() -> bool:
    try:
        import smac  # noqa: F401
    except ImportError:
        return False
    return True


def tpe_best_run(world: World, n: int, seed: int, low: float, high: float) -> Choice:
    """n − 1 TPE runs on seed 0 and one λ = 0 run on seed 0; the best run, and whether it beat λ = 0."""
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(lambda trial: world.fid(trial.suggest_float("lambda", low, high, log=True), 0), n_trials=n - 1)
    best = float(study.best_params["lambda"])
    return best, "lower" if study.best_value < world.fid(CONTROL, 0) else None


def smac_incumbent(world: World, n: int, seed: int, low: float, high: float) -> Choice:
    """n − 1 SMAC runs (its intensification over seeds) and one λ = 0 run on the incumbent's first seed."""
    from ConfigSpace import ConfigurationSpace, Float
    from smac import HyperparameterOptimizationFacade, Scenario
    from smac.model.random_forest import RandomForest

    space = ConfigurationSpace(seed=seed)
    space.add(Float("log_lambda", (math.log10(low), math.log10(high))))

    def train(config: object, seed: int = 0) -> float:
        return world.fid(10 ** float(config["log_lambda"]), seed)  # type: ignore[index]

    with tempfile.TemporaryDirectory() as directory:
        scenario = Scenario(space, deterministic=False, n_trials=n - 1, seed=seed,
                            output_directory=Path(directory) / "smac")
        # The facade's random forest (its get_model defaults) on one thread: its default n_jobs = -1 spent most of
        # a study waiting on joblib threads on this shared 2-core machine.
        model = RandomForest(space, n_trees=10, ratio_features=1.0, min_samples_split=2, min_samples_leaf=1,
                             max_depth=2**20, bootstrapping=True, seed=seed, n_jobs=1)
        facade = HyperparameterOptimizationFacade(scenario, train, model=model, overwrite=True,
                                                  logging_level=logging.ERROR)
        incumbent = facade.optimize()
        seeds = [key.seed for key in facade.runhistory if facade.runhistory.get_config(key.config_id) == incumbent]
    lam = 10 ** float(incumbent["log_lambda"])
    first = int(seeds[0]) if seeds else 0
    return lam, "lower" if world.fid(lam, first) < world.fid(CONTROL, first) else None
