"""One trial on this machine's device: steps/s per variant, the fraction of the card's peak, and bf16's FID.

    python bench/single.py [--device auto] [--steps 500] [--fid-steps 2000] [--seeds 3]

Variants: eager fp32 (the step as written), CUDA-graph replay in fp32 and in bf16,
each with and without channels_last. The peak is a large matrix product measured
here (bf16, and fp32 without TF32); a step's FLOPs are counted by
`torch.utils.flop_counter`. The FID check trains the same trials in fp32 and bf16
(`--seeds` seeds each) and scores them with the study's LeNet FID.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch
from _common import flop_count, matmul_peak, print_table, step_rates, synchronize, write_json

from lambda_search.config import DataSection, FidSection, TrainSection
from lambda_search.data import load_images
from lambda_search.gan.train import GanState, fixed_noise, make_step, new_state, resolve_device, train
from lambda_search.metrics.fid import FidScorer

LAMBDA = 1e-3
VARIANTS = {  # name: (cuda_graph, precision, channels_last)
    "eager-fp32": (False, "fp32", False),
    "graph-fp32": (True, "fp32", False),
    "graph-fp32-cl": (True, "fp32", True),
    "graph-bf16": (True, "bf16", False),
    "graph-bf16-cl": (True, "bf16", True),
}


def fresh_state(section: TrainSection, data, seed: int, device: torch.device, channels_last: bool) -> GanState:
    state = new_state(section, data.shape, seed, device)
    if channels_last:
        state.generator.to(memory_format=torch.channels_last)
        state.discriminator.to(memory_format=torch.channels_last)
    return state


def flops_per_step(section: TrainSection, data, device: torch.device) -> float:
    state = new_state(section, data.shape, 0, device)
    step = make_step(state, data.images, dataclasses.replace(section, cuda_graph=False), LAMBDA)
    return flop_count(step)


def steps_per_second(section: TrainSection, data, device: torch.device, channels_last: bool,
                     steps: int, repeats: int) -> list[float]:
    state = fresh_state(section, data, 0, device, channels_last)
    step = make_step(state, data.images, section, LAMBDA)
    for _ in range(20):  # warm-up, capture
        step()
    return step_rates(step, device, steps, repeats)


def fid_after_training(section: TrainSection, data, scorer: FidScorer, noise: torch.Tensor, seed: int,
                       steps: int, device: torch.device) -> tuple[float, float]:
    """(FID, seconds of one FID evaluation) of a trial trained `steps` steps."""
    state = new_state(section, data.shape, seed, device)
    train(state, data, section, LAMBDA, steps)
    synchronize(device)
    started = time.perf_counter()
    fid = scorer.score(state.generator, noise)
    return fid, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--fid-steps", type=int, default=2000)
    parser.add_argument("--fid-samples", type=int, default=5000)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    device = resolve_device(args.device)
    data = load_images(DataSection()).to(device)
    base = TrainSection(width=args.width, batch_size=args.batch_size, device=str(device))
    peak_bf16 = matmul_peak(device, torch.bfloat16, allow_tf32=False)
    peak_fp32 = matmul_peak(device, torch.float32, allow_tf32=False)
    flops = flops_per_step(base, data, device)

    speed_rows = []
    for name, (graphed, precision, channels_last) in VARIANTS.items():
        section = dataclasses.replace(base, cuda_graph=graphed, precision=precision)
        rates = steps_per_second(section, data, device, channels_last, args.steps, args.repeats)
        rate = statistics.median(rates)
        speed_rows.append({"variant": name, "steps_per_s": rate, "spread": (max(rates) - min(rates)) / rate,
                           "tflops": rate * flops / 1e12, "of_bf16_peak": rate * flops / peak_bf16,
                           "of_fp32_peak": rate * flops / peak_fp32})

    scorer = FidScorer(FidSection(n_samples=args.fid_samples), data, device)
    noise = fixed_noise(args.fid_samples, base.latent_dim, 0, device)
    fid_rows = []
    for precision in ("fp32", "bf16"):
        section = dataclasses.replace(base, precision=precision)
        results = [fid_after_training(section, data, scorer, noise, seed, args.fid_steps, device)
                   for seed in range(args.seeds)]
        fids = [fid for fid, _ in results]
        fid_rows.append({"precision": precision, "fid_mean": statistics.mean(fids),
                         "fid_sd": statistics.stdev(fids) if len(fids) > 1 else 0.0,
                         "fids": " ".join(f"{fid:.2f}" for fid in fids),
                         "fid_eval_s": statistics.median(seconds for _, seconds in results)})

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {device} ({name}); step = {flops / 1e9:.3f} GFLOP (batch {args.batch_size}, "
          f"width {args.width}); measured peak: bf16 {peak_bf16 / 1e12:.1f} TFLOP/s, "
          f"fp32 {peak_fp32 / 1e12:.1f} TFLOP/s")
    print_table(speed_rows)
    print(f"FID after {args.fid_steps} steps, λ={LAMBDA}, {args.fid_samples} samples, {args.seeds} seeds:")
    print_table(fid_rows)
    write_json(f"single-{device.type}", {"args": vars(args), "flops_per_step": flops, "peak_bf16": peak_bf16,
                                         "peak_fp32": peak_fp32, "speed": speed_rows, "fid": fid_rows})


if __name__ == "__main__":
    main()
