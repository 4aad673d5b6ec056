"""Fused λ-trials vs the same trials one after another: trials per hour, on this machine's device.

    python bench/fused.py [--members 4 16] [--steps 200] [--device auto] [--width 64] [--no-cuda-graph]

Both sides train the same way (CUDA-graph replay on a GPU unless --no-cuda-graph).
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import print_table, synchronize, write_json

from lambda_search.config import DataSection, TrainSection
from lambda_search.data import load_images
from lambda_search.gan.fused import fuse, train_fused
from lambda_search.gan.train import new_state, resolve_device, train


def sequential_seconds(section, data, lams, steps, device) -> float:
    synchronize(device)
    started = time.perf_counter()
    for lam in lams:
        state = new_state(section, data.shape, 0, device)
        train(state, data, section, lam, steps)
    synchronize(device)
    return time.perf_counter() - started


def fused_seconds(section, data, lams, steps, device) -> float:
    synchronize(device)
    started = time.perf_counter()
    states = [new_state(section, data.shape, 0, device) for _ in lams]
    fused = fuse(states, lams, [0] * len(lams), section, data.shape)
    train_fused(fused, data, section, steps, steps + 1, lambda f: {}, lambda f, leaving: None)
    synchronize(device)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[16])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cuda-graph", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    device = resolve_device(args.device)
    section = TrainSection(width=args.width, batch_size=args.batch_size, cuda_graph=args.cuda_graph)
    data = load_images(DataSection()).to(device)
    fused_seconds(section, data, [1e-4, 1e-2], 5, device)  # warm-up: kernels, allocator
    rows = []
    for members in args.members:
        lams = torch.logspace(-4, -2, members).tolist()
        for repeat in range(args.repeats):
            alone = sequential_seconds(section, data, lams, args.steps, device)
            together = fused_seconds(section, data, lams, args.steps, device)
            rows.append({"members": members, "repeat": repeat, "sequential_s": alone, "fused_s": together,
                         "trials_per_hour_seq": 3600 * members / alone,
                         "trials_per_hour_fused": 3600 * members / together, "speedup": alone / together})
    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"cuda_graph={args.cuda_graph}, {args.steps} steps, width {args.width}, batch {args.batch_size}")
    print_table(rows)
    graph = "graph" if args.cuda_graph else "eager"
    write_json(f"fused-{device.type}-{graph}", {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
