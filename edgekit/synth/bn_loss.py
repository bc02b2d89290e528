"""The BatchNorm-statistics loss shared by the data synthesizers (ZeroQ Eq. 2; Genie Sec. 3.1).

For every BN layer, the per-channel mean and standard deviation of its input over the batch are
compared (L2 norm) with its running mean and sqrt(running_var + eps); the losses are averaged
over the layers. The graph is run with ``torch.fx.Interpreter`` so exported programs work too.
"""
from __future__ import annotations

import torch
from torch import fx

from edgekit.models.canonical import BN_OPS, get_attr_tensor


class BNStatLoss(fx.Interpreter):
    """Run ``gm`` (a graph with BN nodes) and accumulate the BN-statistics loss of the batch."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.targets: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for n in gm.graph.nodes:
            if n.op == "call_function" and n.target in BN_OPS:
                mean = get_attr_tensor(gm, n.args[3]).detach()
                var = get_attr_tensor(gm, n.args[4]).detach()
                eps = n.args[-1] if isinstance(n.args[-1], float) else 1e-5
                self.targets[n.name] = (mean, torch.sqrt(var + eps))
        self.losses: list[torch.Tensor] = []
        self.last_output: torch.Tensor | None = None  # the model's output of the last batch

    def run_node(self, n: fx.Node):
        if n.name in self.targets:
            x = self.env[n.args[0]]
            mean, std = self.targets[n.name]
            dims = [d for d in range(x.dim()) if d != 1]
            var, mu = torch.var_mean(x, dims, correction=0)
            sigma = torch.sqrt(var + 1e-8)
            self.losses.append(torch.norm(mu - mean, 2) + torch.norm(sigma - std, 2))
        return super().run_node(n)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """BN-statistics loss of batch ``x`` (float32 [B, C, H, W]) averaged over the BN layers."""
        self.losses = []
        out = self.run(x)
        self.last_output = out[0] if isinstance(out, (tuple, list)) else out
        return torch.stack(self.losses).mean()


class ClassPrior:
    """Cross-entropy of the logits toward one random class per image, drawn at first use and kept
    for the batch (the class prior of GDFQ, Xu et al. 2020, Sec. 3.2); weight 0 turns it off."""

    def __init__(self, weight: float, n: int, generator: torch.Generator) -> None:
        self.weight, self.n, self.generator = weight, n, generator
        self.labels: torch.Tensor | None = None

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """weight * CE(logits [n, K], labels [n]) as a scalar (0 when the weight is 0)."""
        if self.weight <= 0:
            return logits.new_zeros(())
        if self.labels is None:
            self.labels = torch.randint(0, logits.shape[1], (self.n,), generator=self.generator)
        return self.weight * torch.nn.functional.cross_entropy(logits, self.labels)


def input_prior_loss(x: torch.Tensor) -> torch.Tensor:
    """Pulls the input's per-channel mean to 0 and std to 1 (the normalised-image prior)."""
    dims = [0, 2, 3]
    return torch.norm(x.mean(dims), 2) + torch.norm(x.std(dims) - 1.0, 2)
