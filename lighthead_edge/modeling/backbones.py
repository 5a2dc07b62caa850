"""Backbones: stride-16 feature extractors, in a registry so another backbone is a small addition.

A backbone is an ``nn.Module`` with an ``out_channels`` attribute whose forward maps Tensor[B, 3, H, W]
(normalised) to Tensor[B, out_channels, H/16, W/16]. Register a builder with ``@register_backbone("name")``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from lighthead_edge.errors import CheckpointError, ConfigError

BackboneBuilder = Callable[[], nn.Module]
_BACKBONES: dict[str, BackboneBuilder] = {}


def register_backbone(name: str) -> Callable[[BackboneBuilder], BackboneBuilder]:
    def wrap(builder: BackboneBuilder) -> BackboneBuilder:
        _BACKBONES[name] = builder
        return builder

    return wrap


def available_backbones() -> list[str]:
    return sorted(_BACKBONES)


def build_backbone(name: str, pretrained: str | Path | None = None) -> nn.Module:
    """Build backbone ``name``; ``pretrained`` is a state dict file (torchvision key names for mobilenet_v2)."""
    if name not in _BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; available: {', '.join(available_backbones())}")
    model = _BACKBONES[name]()
    if pretrained is not None:
        load_pretrained(model, pretrained)
    return model


def conv_bn_act(
    cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, act: bool = True
) -> nn.Sequential:
    """Conv-BN-ReLU6 with torchvision's ``Conv2dNormActivation`` layout (indices 0, 1, 2), so its weights load."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block, with torchvision's module names (``conv.0.0.weight`` ...)."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_act(cin, hidden, kernel=1))
        layers += [
            conv_bn_act(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, 1, 0, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


# (expand ratio t, channels c, repeats n, stride s) of MobileNetV2 up to stride 16 (torchvision features[0:14])
_MBV2_STRIDE16 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1)]


class MobileNetV2Features(nn.Module):
    """MobileNetV2 ``features[0:14]``: 96 channels at stride 16, where Light-Head puts both RPN and thin map."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn_act(3, 32, stride=2)]
        cin = 32
        for t, c, n, s in _MBV2_STRIDE16:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        self.features = nn.Sequential(*layers)
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class TinyBackbone(nn.Module):
    """A small stride-16 conv net for fast tests and CI; trains from scratch in minutes."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 48, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for c in widths:
            layers += [conv_bn_act(cin, c, stride=2), conv_bn_act(c, c)]
            cin = c
        self.features = nn.Sequential(*layers)
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


@register_backbone("mobilenet_v2")
def _mobilenet_v2() -> nn.Module:
    return MobileNetV2Features()


@register_backbone("tiny")
def _tiny() -> nn.Module:
    return TinyBackbone()


def load_pretrained(model: nn.Module, path: str | Path) -> None:
    """Load an ImageNet state dict into a backbone; keys the backbone lacks (the classifier, later stages) are
    ignored, and every key the backbone has must be present with the right shape."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"pretrained weights not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise CheckpointError(f"can't read pretrained weights {path}: {type(exc).__name__}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or bad:
        raise CheckpointError(
            f"{path} does not fit backbone {type(model).__name__}: {len(missing)} missing and {len(bad)} mis-shaped "
            f"tensors (first: {(missing + bad)[0]})"
        )
    model.load_state_dict({k: state[k] for k in own})
