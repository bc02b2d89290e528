"""Small canonical models shared by the quantization tests."""
from __future__ import annotations

import pytest
import torch

from edgekit.data.datasets import PREPROCESS
from edgekit.models.canonical import canonicalize


@pytest.fixture(scope="session")
def tiny_canonical():
    """tests.fixtures.models.TinyBN canonicalized, with Fashion-MNIST input bounds."""
    from tests.fixtures.models import tiny_bn
    c = canonicalize(tiny_bn(), torch.zeros(1, 1, 28, 28), "tiny_bn")
    c.input_bounds = PREPROCESS["fashion-mnist"].bounds()
    return c


@pytest.fixture(scope="session")
def strided_canonical():
    """A conv-BN-ReLU, stride-2 conv-BN-ReLU, linear model (for swing convolution)."""
    from torch import nn

    class Strided(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
            self.c2, self.b2 = nn.Conv2d(4, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8)
            self.fc = nn.Linear(8, 10)

        def forward(self, x):
            y = torch.relu(self.b1(self.c1(x)))
            y = torch.relu(self.b2(self.c2(y)))
            return self.fc(y.mean((2, 3)))

    torch.manual_seed(0)
    return canonicalize(Strided().eval(), torch.zeros(1, 1, 16, 16), "strided")
