"""What one trial costs on this machine's device, with the EMA generator and with deterministic algorithms.

    python bench/costs.py [--config studies/gpu.toml] [--device auto] [--repeats 3] [--ema 0.95]

One lone trial of the study file (fuse = 1), trained and scored as a trial is: the live FID at
every evaluation, and the EMA FID (BatchNorm statistics recomputed) when `[train] ema` is on.
Four variants alternate within each repeat, all on seed 1: the file as it is, `ema`,
`deterministic = true`, and both. Per variant: training steps/s (evaluations excluded), the
whole run's wall seconds (training and every evaluation) and their ratio to the file as it is,
and the largest |ΔFID| between repeats of the same seed (0 where a rerun repeats bit for bit).

CUBLAS_WORKSPACE_CONFIG is set for every variant (cuBLAS reads it once, when it starts), so the
non-deterministic variants also run with the workspace the deterministic ones need.
"""

from __future__ import annotations

import argparse
import os
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

SEED = 1
LAMBDA = 1e-3


def deterministic(on: bool) -> None:
    """What `configure_torch` does for `[train] deterministic`, switchable both ways between runs."""
    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = False


def run(config: StudyConfig, data: ImageData, scorer: FidScorer, device: torch.device) -> dict[str, float]:
    """One trial: steps/s of its training, wall seconds of the whole run, and its last FIDs."""
    deterministic(config.train.deterministic)
    synchronize(device)
    started = time.perf_counter()
    last, training = train_and_score(config, data, scorer, LAMBDA, SEED)
    synchronize(device)
    return {"steps_per_s": config.train.steps / training, "run_s": time.perf_counter() - started, **last}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path(__file__).parent.parent / "studies" / "gpu.toml")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ema", type=float, default=0.95)
    parser.add_argument("--steps", type=int, help="override [train] steps (a dry run)")
    parser.add_argument("--fid-samples", type=int, help="override [fid] n_samples (a dry run)")
    args = parser.parse_args()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    device = resolve_device(args.device)
    train_overrides = {"device": str(device), "fuse": 1, **({"steps": args.steps} if args.steps else {})}
    base = load_config(args.config).with_overrides(
        train=train_overrides, fid={"n_samples": args.fid_samples} if args.fid_samples else {})
    torch.set_num_threads(base.train.threads)
    variants = {
        "as-is": base,
        "ema": base.with_overrides(train={"ema": args.ema}),
        "deterministic": base.with_overrides(train={"deterministic": True}),
        "ema+deterministic": base.with_overrides(train={"ema": args.ema, "deterministic": True}),
    }
    data = load_images(base.data).to(device)
    scorer = FidScorer(base.fid, data, device)
    run(base, data, scorer, device)  # warm-up: kernels, allocator, LeNet features of the real images

    results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for repeat in range(args.repeats):
        for name, config in variants.items():
            results[name].append(run(config, data, scorer, device))
            print(f"repeat {repeat + 1} {name}: {results[name][-1]}", flush=True)
    deterministic(False)

    baseline = statistics.median(r["run_s"] for r in results["as-is"])
    rows = []
    for name, runs in results.items():
        fids = [r[FID_EMA if FID_EMA in r else FID] for r in runs]
        run_s = statistics.median(r["run_s"] for r in runs)
        rows.append({"variant": name, "steps_per_s": statistics.median(r["steps_per_s"] for r in runs),
                     "run_s": run_s, "vs_as_is": run_s / baseline, "fid": statistics.median(fids),
                     "rerun_max_dfid": max(fids) - min(fids)})
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {device} ({name}); {args.config.name}: {base.train.steps} steps, width {base.train.width}, "
          f"batch {base.train.batch_size}, FID on {base.fid.n_samples} samples every {base.fid.eval_every} steps; "
          f"ema {args.ema}; median of {args.repeats}")
    print_table(rows)
    write_json(f"costs-{device.type}", {"args": {**vars(args), "config": str(args.config)},
                                        "runs": results, "rows": rows})


if __name__ == "__main__":
    main()
