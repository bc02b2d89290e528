"""A MobileViT-style hybrid vision transformer for 1x28x28 inputs (Mehta & Rastegari 2022,
"MobileViT: Light-weight, General-purpose, and Mobile-friendly Vision Transformer", Sec. 3.1).

Conv stages (a 3x3 stem and MobileNetV2 inverted residuals, BatchNorm everywhere) feed two
MobileViT blocks: a local 3x3 conv and a 1x1 projection to the transformer width, an unfold of the
feature map into p x p patches, transformer layers (pre-LayerNorm, multi-head self-attention with
explicit q@kᵀ and attn@v matmuls, a SiLU MLP), the fold back, a 1x1 projection and a 3x3 fusion
conv over the concatenation with the block's input. The unfold/fold and the conv<->attention
hand-overs are the "bridge blocks" of Q-HyViT (Lee et al., Sec. III-C).

Input: float32 [N, 1, 28, 28], normalised with the Fashion-MNIST mean/std. Output: float32
logits [N, num_classes].
"""
from __future__ import annotations

import torch
from torch import nn


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    """k x k conv (no bias), BatchNorm and, with ``act``, SiLU."""
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise (stride), 1x1 project; identity shortcut when
    the shape is kept."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int = 2) -> None:
        super().__init__()
        hidden = cin * expand
        self.block = nn.Sequential(conv_bn(cin, hidden, 1), conv_bn(hidden, hidden, 3, stride, groups=hidden),
                                   conv_bn(hidden, cout, 1, act=False))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class Attention(nn.Module):
    """Multi-head self-attention on tokens [B, T, D]: one qkv linear, softmax(q kᵀ / sqrt(d)) v as
    two explicit matmuls, an output linear."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.softmax = nn.Softmax(dim=-1)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [B, heads, T, head_dim]
        attn = self.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, t, d)
        return self.proj(out)


class TransformerLayer(nn.Module):
    """Pre-norm transformer layer on [B, T, D]: x + MHSA(LN(x)), then x + MLP(LN(x)) with an
    ``act`` (SiLU here, GELU in EfficientFormer) MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 2, act: type[nn.Module] = nn.SiLU) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), act(), nn.Linear(dim * mlp_ratio, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MobileViTBlock(nn.Module):
    """MobileViT block on [N, C, H, W] (H, W divisible by ``patch``): local 3x3 conv, 1x1 to
    ``dim``, unfold to [N * p * p, H * W / p², dim] tokens (pixels at the same offset of every
    patch attend to each other), ``depth`` transformer layers, fold, 1x1 back to C, and a 3x3
    fusion conv over concat(input, that)."""

    def __init__(self, channels: int, dim: int, depth: int, heads: int, patch: int) -> None:
        super().__init__()
        self.patch = patch
        self.local = conv_bn(channels, channels, 3)
        self.to_tokens = nn.Conv2d(channels, dim, 1, bias=False)
        self.transformer = nn.Sequential(*[TransformerLayer(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.from_tokens = conv_bn(dim, channels, 1)
        self.fuse = conv_bn(2 * channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.to_tokens(self.local(x))
        n, d, h, w = y.shape
        p = self.patch
        # unfold: [N, D, H, W] -> [N, D, H/p, p, W/p, p] -> [N, p, p, H/p, W/p, D] -> [N*p*p, HW/p², D]
        t = y.reshape(n, d, h // p, p, w // p, p).permute(0, 3, 5, 2, 4, 1).reshape(n * p * p, (h // p) * (w // p), d)
        t = self.norm(self.transformer(t))
        # fold: the inverse permutation
        y = t.reshape(n, p, p, h // p, w // p, d).permute(0, 5, 3, 1, 4, 2).reshape(n, d, h, w)
        return self.fuse(torch.cat([x, self.from_tokens(y)], dim=1))


class MobileViT(nn.Module):
    """[N, in_channels, 28, 28] float32 -> [N, num_classes] logits: stem 3x3/2 (14x14), two
    inverted residuals, a MobileViT block (patch 2), an inverted residual /2 (7x7), a MobileViT
    block (patch 1: global attention over the 49 positions), 1x1 head conv, average pool, linear."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.stem = conv_bn(in_channels, 16, 3, 2)
        self.stage1 = nn.Sequential(InvertedResidual(16, 24, 1), InvertedResidual(24, 24, 1))
        self.vit1 = MobileViTBlock(24, 32, depth=1, heads=2, patch=2)
        self.down = InvertedResidual(24, 48, 2)
        self.vit2 = MobileViTBlock(48, 64, depth=2, heads=4, patch=1)
        self.head = conv_bn(48, 128, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.vit1(self.stage1(self.stem(x)))
        x = self.head(self.vit2(self.down(x)))
        return self.fc(torch.flatten(self.pool(x), 1))
