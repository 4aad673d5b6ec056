"""The EMA generator on the quickstart's setting: its compute overhead, and the noise of a paired λ difference.

    python bench/ema.py [--seeds 8] [--ema 0.95] [--lam 6.44e-3] [--timing-repeats 3] [--config FILE] [--device cpu]

Every run is a run of the study file (default studies/quickstart.toml: 400 steps, width 32, 1,000 FID
samples, evaluations at steps 200 and 400; one lone trial, fuse = 1) on its thread count, trained and
scored as a trial is (the live FID, and the EMA FID with recomputed BatchNorm statistics).

Noise: for seeds 1 … n, λ and λ = 0 are trained with ``ema`` on; the per-seed differences
FID(λ) − FID(0) are reported for the live and the EMA generator (mean, sd), as the verdict pairs them.
Overhead: one seed trained with ema = 0 and with ``ema``, alternately, ``--timing-repeats`` times;
the ratio of the median times of a whole run, training and its evaluations: CPU time on the CPU
(`time.process_time`: wall time on a shared machine measures the neighbours), wall time on a GPU.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _common import print_table, synchronize, write_json
from _trial import train_and_score

from lambda_search.config import StudyConfig, load_config
from lambda_search.data import ImageData, load_images
from lambda_search.gan.train import resolve_device
from lambda_search.metrics.fid import FidScorer
from lambda_search.names import FID, FID_EMA

QUICKSTART = Path(__file__).parent.parent / "studies" / "quickstart.toml"


def clock(device: torch.device) -> float:
    """CPU seconds on the CPU, wall seconds (after the queued kernels) on a GPU."""
    synchronize(device)
    return time.process_time() if device.type == "cpu" else time.perf_counter()


def run(config: StudyConfig, data: ImageData, scorer: FidScorer, lam: float,
        seed: int) -> tuple[dict[str, float], float]:
    """One run scored at every evaluation as a trial is; returns its last FIDs and its seconds (`clock`)."""
    device = data.images.device
    started = clock(device)
    last, _ = train_and_score(config, data, scorer, lam, seed)
    return last, clock(device) - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--ema", type=float, default=0.95)
    parser.add_argument("--lam", type=float, default=6.44e-3)
    parser.add_argument("--timing-repeats", type=int, default=3)
    parser.add_argument("--config", type=Path, default=QUICKSTART)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, help="override [train] steps (a dry run)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    overrides = {"device": str(device), "fuse": 1, "ema": 0.0, **({"steps": args.steps} if args.steps else {})}
    base = load_config(args.config).with_overrides(train=overrides)
    torch.set_num_threads(base.train.threads)
    config = base.with_overrides(train={"ema": args.ema})
    data = load_images(config.data).to(device)
    scorer = FidScorer(config.fid, data, device)

    seconds: dict[str, list[float]] = {"ema_off": [], "ema_on": []}
    for _ in range(args.timing_repeats):
        seconds["ema_off"].append(run(base, data, scorer, args.lam, 1)[1])
        seconds["ema_on"].append(run(config, data, scorer, args.lam, 1)[1])
    medians = {key: statistics.median(values) for key, values in seconds.items()}
    kind = "CPU" if device.type == "cpu" else "wall"
    print(f"run {kind} seconds, median of {args.timing_repeats}: ema 0 {medians['ema_off']:.1f}, "
          f"ema {args.ema} {medians['ema_on']:.1f}, ratio {medians['ema_on'] / medians['ema_off']:.3f}", flush=True)

    rows: list[dict[str, float]] = []
    for seed in range(1, args.seeds + 1):
        treated, _ = run(config, data, scorer, args.lam, seed)
        control, _ = run(config, data, scorer, 0.0, seed)
        rows.append({"seed": seed, "fid_lam": treated[FID], "fid_0": control[FID],
                     "fid_ema_lam": treated[FID_EMA], "fid_ema_0": control[FID_EMA],
                     "diff_live": treated[FID] - control[FID], "diff_ema": treated[FID_EMA] - control[FID_EMA]})
        print(rows[-1], flush=True)
    summary = {}
    if len(rows) >= 2:  # --seeds 0 or 1: the timing alone
        print_table(rows)
        for key in ("fid_lam", "fid_0", "fid_ema_lam", "fid_ema_0", "diff_live", "diff_ema"):
            values = [row[key] for row in rows]
            summary[key] = {"mean": statistics.mean(values), "sd": statistics.stdev(values)}
            print(f"{key}: mean {summary[key]['mean']:.2f}, sd {summary[key]['sd']:.2f}")
    write_json(f"ema-{device.type}-{args.seeds}-seeds", {"args": {**vars(args), "config": str(args.config)},
                                                          "seconds": seconds, "medians": medians,
                                                          "rows": rows, "summary": summary})


if __name__ == "__main__":
    main()
