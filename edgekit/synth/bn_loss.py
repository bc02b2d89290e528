"""The BatchNorm-statistics loss shared by the data synthesizers (ZeroQ Eq. 2; Genie Sec. 3.1).

For every BN layer, the per-channel mean and standard deviation of its input over the batch are
compared (L2 norm) with its running mean and sqrt(running_var + eps); the losses are averaged
over the layers. The graph is run with ``torch.fx.Interpreter`` so exported programs work too.
"""
from __future__ import annotations

import torch
from torch import fx

from edgekit.models.canonical import BN_OPS, get_attr_tensor, pad_rows


class BNStatLoss(fx.Interpreter):
    """Run ``gm`` (a graph with BN nodes) and accumulate the BN-statistics loss of the batch.

    static_batch: the batch the program is specialised to (None: any batch). A batch of more
    images is then run in chunks of that size and the statistics are taken over the whole batch
    (the BN inputs of all chunks together), as the loss defines them."""

    def __init__(self, gm: fx.GraphModule, static_batch: int | None = None) -> None:
        super().__init__(gm)
        self.static_batch = static_batch
        self.targets: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for n in gm.graph.nodes:
            if n.op == "call_function" and n.target in BN_OPS:
                mean = get_attr_tensor(gm, n.args[3]).detach()
                var = get_attr_tensor(gm, n.args[4]).detach()
                eps = n.args[-1] if isinstance(n.args[-1], float) else 1e-5
                self.targets[n.name] = (mean, torch.sqrt(var + eps))
        self.inputs: dict[str, list[torch.Tensor]] = {}
        self.last_output: torch.Tensor | None = None  # the model's output of the last batch

    def run_node(self, n: fx.Node):
        if n.name in self.targets:
            self.inputs.setdefault(n.name, []).append(self.env[n.args[0]])
        return super().run_node(n)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """BN-statistics loss of batch ``x`` (float32 [B, C, H, W]) averaged over the BN layers."""
        self.inputs = {}
        b = self.static_batch or len(x)
        outs, keep = [], []
        for i in range(0, len(x), b):
            part = x[i:i + b]
            n = len(part)
            out = self.run(pad_rows(part, b))  # the padded rows are dropped below
            outs.append((out[0] if isinstance(out, (tuple, list)) else out)[:n])
            keep.append(n)
        self.last_output = torch.cat(outs)
        losses = []
        for name, chunks in self.inputs.items():
            h = torch.cat([c[:k] for c, k in zip(chunks, keep)])
            mean, std = self.targets[name]
            dims = [d for d in range(h.dim()) if d != 1]
            var, mu = torch.var_mean(h, dims, correction=0)
            sigma = torch.sqrt(var + 1e-8)
            losses.append(torch.norm(mu - mean, 2) + torch.norm(sigma - std, 2))
        return torch.stack(losses).mean()


class ClassPrior:
    """Cross-entropy of the logits toward one random class per image, drawn at first use and kept
    for the batch (the class prior of GDFQ, Xu et al. 2020, Sec. 3.2); weight 0 turns it off, and
    it is off for outputs that are not class scores [n, K >= 2] (a detection map, a sequence)."""

    def __init__(self, weight: float, n: int, generator: torch.Generator) -> None:
        self.weight, self.n, self.generator = weight, n, generator
        self.labels: torch.Tensor | None = None

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        """weight * CE(logits [n, K], labels [n]) as a scalar (0 when off)."""
        if self.weight <= 0 or logits.dim() != 2 or logits.shape[1] < 2:
            return logits.new_zeros(())
        if self.labels is None:
            self.labels = torch.randint(0, logits.shape[1], (self.n,), generator=self.generator)
        return self.weight * torch.nn.functional.cross_entropy(logits, self.labels)


def input_prior_loss(x: torch.Tensor, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    """Pulls the input's per-channel mean to ``mean`` and std to ``std``: 0 and 1 (the
    normalised-image prior of ZeroQ) for a model whose preprocessing normalises its inputs."""
    dims = [0, 2, 3]
    return torch.norm(x.mean(dims) - mean, 2) + torch.norm(x.std(dims) - std, 2)
