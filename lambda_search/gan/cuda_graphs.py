"""A training step as one CUDA graph: one launch per step instead of a few hundred.

A small GAN's step is launch-bound on a GPU: forward, backward and two Adam
updates are hundreds of tiny kernels, and the host cannot issue them as fast as
the card runs them. `Step` splits a step in two:

- `draw()` runs eagerly every step: the RNG draws (batch indices, noise) into
  static buffers, from the trial's own `torch.Generator`, so the random streams
  are exactly those of an eager run and a graphed trial matches an eager one.
- `body()` is everything else. Off CUDA it simply runs. On CUDA it runs eagerly
  for a few warm-up steps (on a side stream, as capture requires), is then
  captured once and replayed for every later step.

The body's output tensor is static too: read it before the next call. Anything the
body reads (parameters, optimizer state, buffers) must keep its storage: in-place
updates only, which `optimizer.step()`, BatchNorm and `load_state_dict` all honour.
Adam needs ``capturable=True`` on CUDA (its step counter lives on the device).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

# Eager steps before capture: lets Adam create its state and cuDNN choose algorithms.
WARMUP_STEPS = 3


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[object]:
    """The forward passes' precision: bfloat16 autocast for "bf16", nothing for "fp32".

    The weights, the optimizer and the penalty λ·Σ‖w‖² stay float32 either way.
    """
    if precision != "bf16":
        return contextlib.nullcontext()
    # Autocast's weight-cast cache would hold tensors from outside a graph's memory pool.
    return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)


class Step:
    """Callable: one training step (`draw` then `body`); replayed from a CUDA graph when `graphed`."""

    def __init__(self, draw: Callable[[], None], body: Callable[[], torch.Tensor], device: torch.device,
                 graphed: bool) -> None:
        self.draw = draw
        self.body = body
        self.device = device
        self.graphed = graphed and device.type == "cuda"
        self.eager_steps = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.output: torch.Tensor | None = None

    def __call__(self) -> torch.Tensor:
        self.draw()
        if not self.graphed:
            return self.body()
        if self.graph is None and self.eager_steps < WARMUP_STEPS:
            self.eager_steps += 1
            return self._on_side_stream()
        if self.graph is None:
            self._capture()
        assert self.graph is not None and self.output is not None
        self.graph.replay()
        return self.output

    def _on_side_stream(self) -> torch.Tensor:
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            output = self.body()
        torch.cuda.current_stream(self.device).wait_stream(side)
        return output

    def _capture(self) -> None:
        # Capture records the kernels without running them: the caller replays the graph
        # for this step too.
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.output = self.body()
        self.graph = graph
