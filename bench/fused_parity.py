"""Does a faster fused variant change the answer? Paired FID against today's fp32 path, beside the GPU's own noise.

    python bench/fused_parity.py [--device auto] [--steps 2000] [--variants batched-tf32 grouped-bf16]

Trains one fused job of 3 seeds × 2 λ (6 members) with the reference path (grouped
convolutions, true fp32) twice — two identical computations, whose FIDs differ only by
the GPU's run-to-run noise — and once per variant. For each variant: the paired FID
difference to the first reference run (mean and 95% t interval over the 6 members), and
the same figure for the second reference run: the noise floor. A variant may become the
default only when its interval lies within the noise floor's spread. Writes
bench/results/fused-parity-<device>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics

import torch
from _common import print_table, tf32, write_json
from fused_variants import VARIANTS

from lambda_search.config import DataSection, FidSection, TrainSection
from lambda_search.data import load_images
from lambda_search.gan.fused import fuse, train_fused, unfuse
from lambda_search.gan.train import fixed_noise, new_state, resolve_device
from lambda_search.metrics.fid import FidScorer
from lambda_search.metrics.stats import mean_interval

SEEDS = (0, 1, 2)
LAMBDAS = (1e-3, 1e-2)
REFERENCE = ("grouped", False, False, "fp32", True)


def member_fids(section: TrainSection, allow_tf32: bool, channels_last: bool, data, scorer: FidScorer,
                steps: int, device: torch.device) -> list[float]:
    """FID of each (seed, λ) member after `steps` fused steps."""
    members = [(seed, lam) for seed in SEEDS for lam in LAMBDAS]
    states = [new_state(section, data.shape, seed, device) for seed, _ in members]
    job = fuse(states, [lam for _, lam in members], [seed for seed, _ in members], section, data.shape)
    if channels_last:
        job.generator.to(memory_format=torch.channels_last)
        job.discriminator.to(memory_format=torch.channels_last)
    with tf32(allow_tf32):
        job, _ = train_fused(job, data, section, steps, steps + 1, lambda _job: {}, lambda _job, _leaving: None)
    fids = []
    for index, (seed, _) in enumerate(members):
        state = unfuse(job, index, section, data.shape)
        fids.append(scorer.score(state.generator, fixed_noise(scorer.n_samples, section.latent_dim, seed, device)))
    return fids


def paired_row(name: str, fids: list[float], reference: list[float]) -> dict[str, float | str]:
    interval = mean_interval([value - base for value, base in zip(fids, reference, strict=True)])
    return {"variant": name, "mean_fid": statistics.fmean(fids), "paired_diff": interval.mean,
            "ci_low": interval.low, "ci_high": interval.high,
            "max_abs_diff": max(abs(value - base) for value, base in zip(fids, reference, strict=True))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--fid-samples", type=int, default=5000)
    parser.add_argument("--variants", nargs="+", default=["batched-tf32", "grouped-tf32", "grouped-bf16"],
                        choices=list(VARIANTS))
    args = parser.parse_args()
    device = resolve_device(args.device)
    data = load_images(DataSection()).to(device)
    scorer = FidScorer(FidSection(n_samples=args.fid_samples), data, device)
    base = TrainSection(width=args.width, device=str(device))

    def run(settings: tuple[str, bool, bool, str, bool]) -> list[float]:
        fused_conv, allow_tf32, channels_last, precision, graphed = settings
        section = dataclasses.replace(base, fused_conv=fused_conv, precision=precision, cuda_graph=graphed)
        return member_fids(section, allow_tf32, channels_last, data, scorer, args.steps, device)

    reference = run(REFERENCE)
    rows = [paired_row("reference-again (noise)", run(REFERENCE), reference)]
    rows += [paired_row(name, run(VARIANTS[name]), reference) for name in args.variants]
    print(f"device: {device}; {len(SEEDS)} seeds × {len(LAMBDAS)} λ, {args.steps} steps, width {args.width}; "
          f"paired FID difference to the fp32 grouped reference ({args.fid_samples} samples)")
    print_table(rows)
    write_json(f"fused-parity-{device.type}", {"args": vars(args), "reference": reference, "rows": rows})


if __name__ == "__main__":
    main()
