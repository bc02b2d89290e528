"""An EfficientFormer-style hybrid for 1x28x28 inputs (Li et al. 2022, "EfficientFormer: Vision
Transformers at MobileNet Speed", Sec. 4): 4-D conv stages of Meta4D blocks (an average-pool
token mixer and a 1x1-conv MLP with BatchNorm, both residual), then one bridge that flattens the
feature map to [N, H*W, C] tokens for 3-D stages of Meta3D blocks (pre-LayerNorm multi-head
self-attention and a GELU MLP). Unlike MobileViT's unfold/fold, the hand-over happens once and
never returns to 4-D: a second bridge shape for Q-HyViT (Lee et al., Sec. III-C).

Input: float32 [N, 1, 28, 28], normalised with the Fashion-MNIST mean/std. Output: float32
logits [N, num_classes].
"""
from __future__ import annotations

import torch
from torch import nn

from edgekit.models.mobilevit import TransformerLayer


def conv_bn(cin: int, cout: int, stride: int, act: bool = True) -> nn.Sequential:
    """3x3 conv (no bias), BatchNorm and, with ``act``, ReLU."""
    layers = [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Meta4D(nn.Module):
    """x + (avgpool3x3(x) - x), then x + BN(conv1x1(GELU(BN(conv1x1(x))))) on [N, C, H, W]."""

    def __init__(self, channels: int, mlp_ratio: int = 2) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        hidden = channels * mlp_ratio
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.GELU(),
                                 nn.Conv2d(hidden, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + (self.pool(x) - x)
        return x + self.mlp(x)


class EfficientFormer(nn.Module):
    """[N, in_channels, 28, 28] float32 -> [N, num_classes] logits: stem (3x3/2 to 14x14, 3x3),
    two Meta4D blocks, a 3x3/2 conv down to 7x7, two Meta4D blocks, the flatten to 49 tokens, two
    Meta3D blocks, LayerNorm, the mean over tokens and a linear classifier."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(in_channels, 16, 2), conv_bn(16, 24, 1))
        self.stage1 = nn.Sequential(Meta4D(24), Meta4D(24))
        self.down = conv_bn(24, 64, 2, act=False)
        self.stage2 = nn.Sequential(Meta4D(64), Meta4D(64))
        self.stage3 = nn.Sequential(TransformerLayer(64, 4, act=nn.GELU), TransformerLayer(64, 4, act=nn.GELU))
        self.norm = nn.LayerNorm(64)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage2(self.down(self.stage1(self.stem(x))))
        tokens = x.flatten(2).transpose(1, 2)  # the bridge: [N, C, H, W] -> [N, H*W, C]
        return self.fc(self.norm(self.stage3(tokens)).mean(1))
