"""The public API for applying an exported λ in one's own PyTorch code (re-exported by `lambda_search`).

Imports torch: `lambda_search` loads this module on first use of one of its names.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lambda_search.errors import ConfigError
from lambda_search.gan import penalty as _penalty


def decayed_parameters(model: nn.Module, penalize: str = "weights") -> list[nn.Parameter]:
    """The parameters of `model` that λ decays, exactly as the sweep chose them.

    Args:
        model: a network (a generator or a discriminator).
        penalize: "weights" takes the trainable tensors with ≥ 2 dimensions (conv and linear
            kernels) and leaves biases and normalization scales alone; "all" takes every
            trainable parameter. Use the export's ``penalize``.

    Returns:
        The decayed parameters, in `model.parameters()` order.
    """
    _check("penalize", penalize, ("weights", "all"))
    return _penalty.decayed_parameters(model, penalize)


def penalty(model: nn.Module, lam: float, penalize: str = "weights") -> torch.Tensor:
    """The weight-decay term λ·Σ‖w‖² over `model`'s decayed parameters, to add to the loss.

    With ``decay_mode = "l2"`` the sweep trained on ``loss = gan_loss + penalty(network, λ)``
    for each network the export's ``apply_to`` names.

    Args:
        model: a network.
        lam: λ, the export's ``lam``.
        penalize: which tensors are decayed (see `decayed_parameters`).

    Returns:
        A 0-dim tensor, differentiable in the decayed parameters.
    """
    return _penalty.penalty(lam, decayed_parameters(model, penalize))


def param_groups(model: nn.Module, lam: float, mode: str = "l2",
                 penalize: str = "weights") -> list[dict[str, Any]]:
    """Optimizer parameter groups that decay `model` as the sweep did, without a penalty in the loss.

    The sweep trains with Adam(lr, betas=(0.5, 0.999)) and no weight_decay of its own, and:

    - ``mode="l2"``: adds λ·Σ‖w‖² to the loss, which adds 2λ·w to each decayed tensor's gradient.
      ``torch.optim.Adam(param_groups(model, λ, "l2"), lr=..., betas=(0.5, 0.999))`` does the same:
      the decayed tensors get ``weight_decay = 2λ`` (Adam adds weight_decay·w to the gradient),
      the others 0. Same weights after any number of steps, up to float rounding.
    - ``mode="decoupled"``: shrinks each decayed tensor by w ← w − lr·λ·w before each Adam step.
      ``torch.optim.AdamW(param_groups(model, λ, "decoupled"), lr=..., betas=(0.5, 0.999))`` does
      the same: the decayed tensors get ``weight_decay = λ``, the others 0.

    An l2 λ is not a decoupled λ: Adam divides the L2 gradient by its second-moment estimate, so
    no λ of one mode equals a λ of the other. Use the export's ``decay_mode``.

    Args:
        model: the network the export's ``apply_to`` names (call once per network; a network
            λ does not apply to takes a plain optimizer, or `lam` = 0).
        lam: λ, the export's ``lam``.
        mode: the export's ``decay_mode``: "l2" (use with Adam) or "decoupled" (use with AdamW).
        penalize: the export's ``penalize`` (see `decayed_parameters`).

    Returns:
        Two groups: ``{"params": decayed, "weight_decay": 2λ or λ}`` and
        ``{"params": the other trainable parameters, "weight_decay": 0.0}``.
    """
    _check("mode", mode, ("l2", "decoupled"))
    decayed = decayed_parameters(model, penalize)
    chosen = {id(parameter) for parameter in decayed}
    others = [p for p in model.parameters() if p.requires_grad and id(p) not in chosen]
    weight_decay = 2 * lam if mode == "l2" else lam
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}]


def _check(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} = {value!r} is not one of: {', '.join(choices)}")
