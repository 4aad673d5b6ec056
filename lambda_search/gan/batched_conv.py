"""Grouped convolutions as K batched matrix products: the fused job's convolutions on the tensor cores.

A fused job of K λ-trials runs each convolution with ``groups = K``. cuDNN's grouped
kernels leave the tensor cores mostly idle at DCGAN sizes (bench/RESULTS.md: 35% of the
fp32 peak at K = 64). Written as im2col (`F.unfold`), one ``bmm`` with the members as its
batch, and col2im (`F.fold`) for the transposed convolution, the same arithmetic becomes
K large GEMMs, which TF32 and bf16 speed up.

The layers subclass `nn.Conv2d` and `nn.ConvTranspose2d` and keep their parameters as they
are, so a state dict, a member's slice (`fused.unfuse`) and a checkpoint are unchanged:
only `forward` differs, and only by rounding.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


def _member_major(columns: torch.Tensor, members: int) -> torch.Tensor:
    """(B, K·P, L) → (K, P, B·L): each member's columns side by side over the batch."""
    batch, rows, length = columns.shape
    return columns.view(batch, members, rows // members, length).permute(1, 2, 0, 3).reshape(
        members, rows // members, batch * length)


def _batch_major(products: torch.Tensor, batch: int) -> torch.Tensor:
    """(K, Q, B·L) → (B, K·Q, L), the inverse arrangement of `_member_major`."""
    members, rows, _ = products.shape
    return products.view(members, rows, batch, -1).permute(2, 0, 1, 3).reshape(batch, members * rows, -1)


def _numeric_padding(layer: nn.Conv2d | nn.ConvTranspose2d) -> tuple[int, int]:
    """The layer's padding, after checking it is a case these layers compute."""
    if (layer.dilation != (1, 1) or layer.padding_mode != "zeros" or layer.output_padding not in ((0, 0), 0)
            or isinstance(layer.padding, str)):
        raise ValueError(f"{type(layer).__name__} supports dilation 1, numeric zero padding and no "
                         "output_padding only")
    return int(layer.padding[0]), int(layer.padding[1])


class BatchedConv2d(nn.Conv2d):
    """`nn.Conv2d(groups=K)` computed as unfold → bmm over the K groups."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pads = _numeric_padding(self)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        # inputs: (B, K·C, H, W); weight: (K·O, C, kh, kw)
        members, batch = self.groups, inputs.shape[0]
        height = (inputs.shape[2] + 2 * self.pads[0] - self.kernel_size[0]) // self.stride[0] + 1
        width = (inputs.shape[3] + 2 * self.pads[1] - self.kernel_size[1]) // self.stride[1] + 1
        columns = F.unfold(inputs, self.kernel_size, padding=self.pads, stride=self.stride)  # (B, K·C·kh·kw, L)
        kernels = self.weight.view(members, self.out_channels // members, -1)  # (K, O, C·kh·kw)
        outputs = _batch_major(torch.bmm(kernels, _member_major(columns, members)), batch)  # (B, K·O, L)
        outputs = outputs.view(batch, self.out_channels, height, width)
        return outputs if self.bias is None else outputs + self.bias.view(1, -1, 1, 1)


class BatchedConvTranspose2d(nn.ConvTranspose2d):
    """`nn.ConvTranspose2d(groups=K)` computed as bmm over the K groups → fold (col2im)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pads = _numeric_padding(self)

    def forward(self, inputs: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        # inputs: (B, K·C, H, W); weight: (K·C, O, kh, kw)
        members, batch = self.groups, inputs.shape[0]
        height = (inputs.shape[2] - 1) * self.stride[0] - 2 * self.pads[0] + self.kernel_size[0]
        width = (inputs.shape[3] - 1) * self.stride[1] - 2 * self.pads[1] + self.kernel_size[1]
        kernels = self.weight.view(members, self.in_channels // members, -1).transpose(1, 2)  # (K, O·kh·kw, C)
        columns = _batch_major(torch.bmm(kernels, _member_major(inputs.flatten(2), members)), batch)
        outputs = F.fold(columns, (height, width), self.kernel_size, padding=self.pads, stride=self.stride)
        return outputs if self.bias is None else outputs + self.bias.view(1, -1, 1, 1)
