"""Shared by the benchmarks: a results table on stdout and a JSON file beside it."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch.utils import flop_counter

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    return {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    columns = list(rows[0])
    cells = [[f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))


def write_json(name: str, payload: dict[str, Any], directory: Path = RESULTS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2))
    return path


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def tf32(allowed: bool) -> Iterator[None]:
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def matmul_peak(device: torch.device, dtype: torch.dtype, allow_tf32: bool) -> float:
    """FLOP/s of a large square matrix product (median of 10 after 3 warm-ups)."""
    size = 8192 if device.type == "cuda" else 512
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    times = []
    with tf32(allow_tf32):
        for repeat in range(13):
            synchronize(device)
            started = time.perf_counter()
            a @ b
            synchronize(device)
            if repeat >= 3:
                times.append(time.perf_counter() - started)
    return 2 * size**3 / statistics.median(times)


def step_rates(step: Callable[[], object], device: torch.device, steps: int, repeats: int) -> list[float]:
    """Calls of `step` per second, `repeats` times over `steps` calls (warm up before)."""
    rates = []
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        rates.append(steps / (time.perf_counter() - started))
    return rates


def _conv_backward_flop(grad_out_shape: list[int], x_shape: list[int], w_shape: list[int], bias: Any, stride: Any,
                        padding: Any, dilation: Any, transposed: bool, output_padding: Any, groups: int,
                        output_mask: list[bool], out_shape: Any, **kwargs: Any) -> int:
    """torch's count for a convolution's backward, with the weight gradient's divided by `groups`.

    torch 2.14's formula counts the weight gradient of a grouped convolution as if it were
    ungrouped (`groups` times too many: 64× for a fused job of 64 trials), so a fused step's
    count came out 22× too high. The input gradient's count is right.
    """
    def count(mask: list[bool]) -> int:  # the registered formula takes the outputs (here their shapes) as `out_val`
        return int(flop_counter.conv_backward_flop(grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation,
                                                   transposed, output_padding, groups, mask, out_val=out_shape))

    return count([output_mask[0], False, False]) + count([False, output_mask[1], False]) // groups


def flop_count(run: Callable[[], object]) -> float:
    """FLOPs of one call of `run` (forward and backward) by `torch.utils.flop_counter`, grouped convolutions right."""
    mapping = {torch.ops.aten.convolution_backward: _conv_backward_flop}
    with flop_counter.FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        run()
    return float(counter.get_total_flops())
