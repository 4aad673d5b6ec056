"""Weight decay: which tensors it covers, and its two kinds (`[train] decay_mode`).

"l2": λ·Σ‖w‖² added to the loss adds 2λ·w to each gradient. With Adam that is
exactly ``torch.optim.Adam(weight_decay=2λ)``: coupled L2, which Adam divides by
its second-moment estimate like any gradient, so weights with large gradients
are barely decayed.

"decoupled": no penalty in the loss; each step first shrinks the decayed tensors,
w ← w − lr·λ·w (`decoupled_decay_`), then takes the Adam step — exactly
``torch.optim.AdamW(weight_decay=λ)`` restricted to the decayed tensors.

The mapping between the two: with plain SGD, L2 with coefficient λ equals
decoupled decay with coefficient 2λ (w ← w − lr·(g + 2λw)). With Adam no λ maps
one onto the other, because Adam rescales the L2 gradient per weight and step; a
λ found in one mode is not a λ for the other.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def decayed_parameters(module: nn.Module, penalize: str = "weights") -> list[nn.Parameter]:
    """The parameters λ applies to.

    Args:
        module: a network.
        penalize: "weights" keeps tensors with ≥ 2 dimensions (conv and linear
            kernels) and leaves biases and normalization scales alone; "all"
            takes every trainable parameter.
    """
    parameters = [p for p in module.parameters() if p.requires_grad]
    if penalize == "all":
        return parameters
    return [p for p in parameters if p.dim() >= 2]


def squared_norm(parameters: Iterable[torch.Tensor]) -> torch.Tensor:
    """Σ‖w‖² over the given tensors (a 0-dim tensor)."""
    return torch.stack([p.pow(2).sum() for p in parameters]).sum()


def penalty(lam: float, parameters: list[nn.Parameter]) -> torch.Tensor:
    """λ·Σ‖w‖², the term summed into the loss."""
    return lam * squared_norm(parameters)


def decoupled_decay_(lam: float, lr: float, parameters: list[nn.Parameter]) -> None:
    """w ← w − lr·λ·w on each tensor, in place (AdamW's decay; call before the optimizer step)."""
    with torch.no_grad():
        torch._foreach_mul_(tuple(parameters), 1 - lr * lam)


def penalized_networks(apply_to: str) -> tuple[bool, bool]:
    """(generator, discriminator): which networks carry the penalty for `apply_to`."""
    return apply_to in ("generator", "both"), apply_to in ("discriminator", "both")
