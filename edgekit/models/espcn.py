"""ESPCN: the efficient sub-pixel convolutional network for single-image super-resolution.

Source: W. Shi, J. Caballero, F. Huszar, J. Totz, A. P. Aitken, R. Bishop, D. Rueckert, Z. Wang,
"Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel Convolutional
Neural Network", CVPR 2016. Sec. 2.2 (the sub-pixel convolution layer / periodic shuffling) and
Sec. 3.2 (the configuration used in the experiments: l = 3 layers, (f1, n1) = (5, 64),
(f2, n2) = (3, 32), f3 = 3, i.e. conv 5x5 -> 64, conv 3x3 -> 32, conv 3x3 -> r^2 channels, then a
periodic shuffle to the r-times larger image).
"""
from __future__ import annotations

import torch
from torch import nn


class ESPCN(nn.Module):
    """ESPCN (Shi et al., CVPR 2016, Sec. 2.2 and 3.2) for x``scale`` super-resolution.

    Layers: conv 5x5 (channels -> 64), ReLU, conv 3x3 (64 -> 32), ReLU,
    conv 3x3 (32 -> channels * scale^2), ``nn.PixelShuffle(scale)``. Every convolution is
    zero-padded "same" (padding = kernel // 2), so an h x w input gives exactly a
    scale*h x scale*w output, whatever h and w.

    Input: float32 [N, channels, h, w], the luma Y of the low-resolution image in [0, 1]:
    Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255 with R, G, B in [0, 1] (ITU-R BT.601, MATLAB's
    ``rgb2ycbcr``; so Y lies in [16/255, 235/255]); see ``edgekit.tasks.sr_metrics.rgb_to_y``.
    Output: float32 [N, channels, scale*h, scale*w], the high-resolution Y in the same units (not
    clipped; clip to [0, 1] for display or scoring). The chroma is upsampled separately (bicubic),
    as in the paper.

    Activations: the paper uses tanh after the first two layers (Sec. 3.2). This model uses ReLU
    instead: it is meant to be quantized to int8, where a ReLU folds into the preceding
    convolution's output clamp and its unbounded, one-sided range makes good use of an unsigned
    8-bit grid, while tanh would need its own lookup table (or a float fallback) on int8
    targets. The trained checkpoint (``checkpoints/espcn_x3.pt``, made by
    ``examples/train_espcn.py``) uses ReLU.
    """

    example_input_shape = (1, 1, 64, 64)

    def __init__(self, scale: int = 3, channels: int = 1) -> None:
        super().__init__()
        self.scale = int(scale)
        self.channels = int(channels)
        self.conv1 = nn.Conv2d(channels, 64, 5, padding=2)
        self.conv2 = nn.Conv2d(64, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, channels * scale * scale, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, channels, h, w] -> [N, channels, scale*h, scale*w]; see the class docstring."""
        x = self.relu1(self.conv1(x))
        x = self.relu2(self.conv2(x))
        return self.shuffle(self.conv3(x))
