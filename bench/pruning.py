"""Multi-fidelity pruning: the same 16-trial study unpruned and with successive halving.

Prints generator steps trained, wall time and best FID for both, and the seed-noise
band (one λ, 3 seeds) that says whether the two best FIDs differ beyond noise.

    python bench/pruning.py [--study studies/quickstart.toml] [--trials 16] [--pruner sha]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import optuna
import torch
from _common import print_table, write_json

from lambda_search.config import load_config
from lambda_search.data import load_images
from lambda_search.gan.train import TrainHooks, fixed_noise, new_state, train
from lambda_search.metrics.fid import FidScorer
from lambda_search.sweep.study import run

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parent.parent


def sweep(config, pruner: str, directory: Path) -> dict[str, object]:
    storage = f"sqlite:///{directory / f'{pruner}.db'}"
    config = config.with_overrides(study={"pruner": pruner, "storage": storage, "name": f"pruning-{pruner}",
                                          "artifacts": str(directory / pruner)}, train={"device": "cpu"},
                                   search={"control": False})  # the sweep's steps only, in both
    started = time.perf_counter()
    summary = run(config)
    wall = time.perf_counter() - started
    trials = optuna.load_study(study_name=config.study.name, storage=storage).trials
    return {"pruner": pruner, "trials": len(trials),
            "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in trials),
            "steps": sum(t.user_attrs["steps"] for t in trials), "wall_s": wall,
            "best_fid": summary.best_value, "best_lambda": summary.best_lambda}


def seed_band(config, lam: float, seeds: list[int]) -> list[float]:
    """Final FID of one λ trained with each seed: the noise any comparison must beat."""
    data = load_images(config.data)
    scorer = FidScorer(config.fid, data, CPU)
    values = []
    for seed in seeds:
        state = new_state(config.train, data.shape, seed, CPU)
        train(state, data, config.train, lam, config.train.steps, TrainHooks())
        values.append(scorer.score(state.generator, fixed_noise(config.fid.n_samples, config.train.latent_dim,
                                                                seed, CPU)))
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default=str(ROOT / "studies" / "quickstart.toml"))
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--pruner", default="sha")
    parser.add_argument("--eval-every", type=int, default=50, help="the rungs: finer rungs prune earlier")
    args = parser.parse_args()
    config = load_config(args.study).with_overrides(study={"n_trials": args.trials, "strategy": "sweep"},
                                                   fid={"eval_every": args.eval_every})
    with tempfile.TemporaryDirectory() as scratch:
        rows = [sweep(config, "none", Path(scratch)), sweep(config, args.pruner, Path(scratch))]
    band = seed_band(config, float(rows[0]["best_lambda"]), [0, 1, 2])
    spread = max(band) - min(band)
    print_table(rows)
    print(f"steps trained with {args.pruner}: {100 * rows[1]['steps'] / rows[0]['steps']:.1f}% of unpruned")
    print(f"seed band at λ={rows[0]['best_lambda']:.3g}: FIDs {', '.join(f'{v:.2f}' for v in band)} "
          f"(spread {spread:.2f}, sd {statistics.stdev(band):.2f})")
    difference = abs(rows[1]["best_fid"] - rows[0]["best_fid"])
    print(f"best-FID difference {difference:.2f}: {'within' if difference <= spread else 'OUTSIDE'} the seed band")
    write_json("pruning", {"rows": rows, "seed_band": band, "within_band": difference <= spread,
                           "steps_fraction": rows[1]["steps"] / rows[0]["steps"]})


if __name__ == "__main__":
    main()
