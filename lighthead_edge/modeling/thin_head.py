"""The thin feature map: Light-Head R-CNN's large separable convolution (``global_context_module``)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class LargeSeparableConv(nn.Module):
    """Two summed branches on the stride-16 map, then ReLU.

    branch A: k x 1 conv (in -> mid), then 1 x k conv (mid -> out)
    branch B: 1 x k conv (in -> mid), then k x 1 conv (mid -> out)

    Args:
        in_channels: backbone channels.
        mid_channels: C_mid, 64 for the "S" head, 256 for "L".
        out_channels: alpha * p * p (490 by default); PS group g owns channels [g*p*p, (g+1)*p*p).
        kernel_size: k, 15 in the paper.

    Shapes: Tensor[B, in, h, w] -> Tensor[B, out, h, w], non-negative.
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, kernel_size: int = 15) -> None:
        super().__init__()
        k, pad = kernel_size, kernel_size // 2
        self.col_a = nn.Conv2d(in_channels, mid_channels, (k, 1), padding=(pad, 0))
        self.row_a = nn.Conv2d(mid_channels, out_channels, (1, k), padding=(0, pad))
        self.row_b = nn.Conv2d(in_channels, mid_channels, (1, k), padding=(0, pad))
        self.col_b = nn.Conv2d(mid_channels, out_channels, (k, 1), padding=(pad, 0))
        # He init keeps the thin map's scale near the backbone's, so the fc-2048 sees a usable signal from the
        # first iteration; N(0, 0.01) as in the TF code shrinks it ~10x through the two long convs.
        for conv in (self.col_a, self.row_a, self.row_b, self.col_b):
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="linear")
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.row_a(self.col_a(x)) + self.col_b(self.row_b(x)))
