"""lambda-search against the hand-written baseline on the same work, alternating, in one run.

Same study file for both (trials, steps, batch, FID samples; no pruning, one
worker). Prints wall times, their ratio, and the service's per-trial breakdown:
time in training steps vs everything else (FID, storage, checkpoints, artifacts).

    python bench/sweep.py [--study studies/quickstart.toml] [--trials 4] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import torch
from _common import print_table, write_json

from lambda_search.config import load_config
from lambda_search.data import load_images
from lambda_search.metrics.fid import FidScorer

ROOT = Path(__file__).resolve().parent.parent


def study_file(source: str, trials: int, directory: Path) -> Path:
    text = Path(source).read_text()
    config = load_config(source)
    text = text.replace(f"n_trials = {config.study.n_trials}", f"n_trials = {trials}")
    # The baseline is a plain sweep, one run per λ: so is the service's side.
    text = text.replace(f'strategy = "{config.study.strategy}"', 'strategy = "sweep"')
    # The baseline trains no λ = 0 control: equal work means none here either.
    text = text.replace("[search]", "[search]\ncontrol = false", 1)
    path = directory / "bench.toml"
    path.write_text(text)
    return path


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def breakdown(storage: str, name: str) -> list[dict[str, float]]:
    rows = []
    for trial in optuna.load_study(study_name=name, storage=storage).trials:
        wall = (trial.datetime_complete - trial.datetime_start).total_seconds()
        train = trial.user_attrs["train_seconds"]
        rows.append({"trial": trial.number, "wall_s": wall, "train_s": train, "other_s": wall - train,
                     "other_pct": 100 * (wall - train) / wall})
    return rows


def warm_cache(path: Path) -> None:
    """Train the LeNet and cache the real statistics first, so neither side pays for them."""
    config = load_config(path)
    FidScorer(config.fid, load_images(config.data), torch.device("cpu"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default=str(ROOT / "studies" / "quickstart.toml"))
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"baseline": [], "lambda-search": []}
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        path = study_file(args.study, args.trials, directory)
        name = load_config(path).study.name
        warm_cache(path)
        for repeat in range(args.repeats):
            base = f"sqlite:///{directory / f'baseline-{repeat}.db'}"
            service = f"sqlite:///{directory / f'service-{repeat}.db'}"
            times["baseline"].append(timed([sys.executable, "bench/baseline.py", str(path), "--storage", base]))
            times["lambda-search"].append(timed([sys.executable, "-m", "lambda_search", "run", str(path),
                                                 "--storage", service]))
        trials = breakdown(service, name)
    base, ours = statistics.median(times["baseline"]), statistics.median(times["lambda-search"])
    print_table([{"runner": k, "median_s": statistics.median(v), "runs": " ".join(f"{t:.1f}" for t in v)}
                 for k, v in times.items()])
    print(f"baseline / lambda-search = {base / ours:.3f}")
    print_table(trials)
    other = statistics.median(row["other_pct"] for row in trials)
    print(f"median share outside training steps: {other:.2f}%")
    write_json("sweep", {"times": times, "ratio": base / ours, "trials": trials, "other_pct_median": other})


if __name__ == "__main__":
    main()
