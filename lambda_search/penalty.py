"""The weight-decay penalty λ·Σ‖w‖² and which tensors it covers.

Added to the loss, λ·Σ‖w‖² adds 2λ·w to each gradient: with Adam that is exactly
``torch.optim.Adam(weight_decay=2λ)`` (coupled L2, rescaled by Adam's second
moment), not AdamW's decoupled decay.
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


def penalized_networks(apply_to: str) -> tuple[bool, bool]:
    """(generator, discriminator): which networks carry the penalty for `apply_to`."""
    return apply_to in ("generator", "both"), apply_to in ("discriminator", "both")
