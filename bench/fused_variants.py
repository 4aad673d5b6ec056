"""The fused DCGAN step, variant by variant: steps/s, TFLOP/s, fraction of the card's peaks, memory per member.

    python bench/fused_variants.py [--device auto] [--members 16 64 256] [--steps 100]

One fused step (K members: forward, backward, Adam, λ·Σ‖w‖²) is timed for each variant:
- grouped: cuDNN grouped convolutions (today's path);
- batched: the same convolutions as K batched GEMMs (`gan.batched_conv`);
- +tf32: TF32 allowed for matmuls and convolutions (cuDNN allows it for convolutions by
  default; "fp32" rows here switch it off for both, so they are true fp32);
- +cl: channels_last activations and weights;
- +bf16: autocast of the forward passes (weights, Adam and the penalty stay fp32);
- graph / eager: CUDA-graph replay of the whole step, or not.
FLOPs per step are counted by `_common.flop_count` (`torch.utils.flop_counter`, its grouped
convolutions' backward corrected); the peaks are large matrix products
measured in the same run (bf16, TF32 and fp32). Memory per member is the step's peak allocation
over K. Writes bench/results/fused-variants-<device>.json (and $OUT when set, via bench/gpu.sh).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics

import torch
from _common import flop_count, matmul_peak, print_table, step_rates, synchronize, tf32, write_json

from lambda_search.config import DataSection, TrainSection
from lambda_search.data import load_images
from lambda_search.gan.fused import fuse, make_fused_step
from lambda_search.gan.train import new_state, resolve_device

# name: (fused_conv, tf32, channels_last, precision, cuda_graph)
VARIANTS = {
    "grouped-fp32-eager": ("grouped", False, False, "fp32", False),
    "grouped-fp32": ("grouped", False, False, "fp32", True),
    "grouped-tf32": ("grouped", True, False, "fp32", True),
    "grouped-tf32-cl": ("grouped", True, True, "fp32", True),
    "grouped-bf16": ("grouped", True, False, "bf16", True),
    "batched-fp32": ("batched", False, False, "fp32", True),
    "batched-tf32": ("batched", True, False, "fp32", True),
    "batched-bf16": ("batched", True, False, "bf16", True),
}


def fused_job(section: TrainSection, data, members: int, device: torch.device, channels_last: bool):
    lams = torch.logspace(-4, -2, members).tolist()
    states = [new_state(section, data.shape, seed, device) for seed in range(members)]
    job = fuse(states, lams, list(range(members)), section, data.shape)
    if channels_last:
        job.generator.to(memory_format=torch.channels_last)
        job.discriminator.to(memory_format=torch.channels_last)
    return job


def measure(section: TrainSection, data, members: int, device: torch.device, channels_last: bool,
            steps: int, repeats: int) -> dict[str, float]:
    job = fused_job(section, data, members, device, channels_last)
    step = make_fused_step(job, data.images, section)
    for _ in range(5):  # warm-up and graph capture
        step()
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rates = step_rates(step, device, steps, repeats)
    peak_bytes = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    return {"steps_per_s": statistics.median(rates), "spread": (max(rates) - min(rates)) / statistics.median(rates),
            "mib_per_member": peak_bytes / members / 2**20}


def flops_per_step(section: TrainSection, data, members: int, device: torch.device) -> float:
    job = fused_job(dataclasses.replace(section, cuda_graph=False), data, members, device, False)
    step = make_fused_step(job, data.images, dataclasses.replace(section, cuda_graph=False))
    return flop_count(step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--members", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--trial-steps", type=int, default=300, help="steps of one trial, for trials/h")
    args = parser.parse_args()
    device = resolve_device(args.device)
    data = load_images(DataSection()).to(device)
    peaks = {"bf16": matmul_peak(device, torch.bfloat16, False), "tf32": matmul_peak(device, torch.float32, True),
             "fp32": matmul_peak(device, torch.float32, False)}
    base = TrainSection(width=args.width, batch_size=args.batch_size, device=str(device))
    rows = []
    for members in args.members:
        flops = flops_per_step(base, data, members, device)
        for name in args.variants:
            fused_conv, allow_tf32, channels_last, precision, graphed = VARIANTS[name]
            section = dataclasses.replace(base, fused_conv=fused_conv, precision=precision, cuda_graph=graphed)
            try:
                with tf32(allow_tf32):
                    result = measure(section, data, members, device, channels_last, args.steps, args.repeats)
            except torch.OutOfMemoryError:
                rows.append({"K": members, "variant": name, "steps_per_s": float("nan")})
                torch.cuda.empty_cache()
                continue
            rate = result["steps_per_s"]
            rows.append({"K": members, "variant": name, **result,
                         "trials_per_h": 3600 * rate * members / args.trial_steps,
                         "tflops": rate * flops / 1e12, "of_fp32": rate * flops / peaks["fp32"],
                         "of_bf16": rate * flops / peaks["bf16"]})
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {device} ({card}); width {args.width}, batch {args.batch_size}; measured peaks: "
          + ", ".join(f"{kind} {value / 1e12:.1f} TFLOP/s" for kind, value in peaks.items()))
    print_table([{key: row.get(key, float("nan")) for key in rows[0]} for row in rows])
    write_json(f"fused-variants-{device.type}", {"args": vars(args), "peaks": peaks, "rows": rows})


if __name__ == "__main__":
    main()
