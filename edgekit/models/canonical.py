"""The canonical form every model is quantized in: an exported ATen graph with BN folded.

``canonicalize`` exports the model with ``torch.export``, records each BatchNorm layer's
affine parameters (beta, gamma: the per-channel mean and std of its output when its input
matches the running statistics), folds BN into the preceding conv with torchao's
``_fuse_conv_bn_`` (whitepaper Sec. 3.2, "batch norm folding"), and re-exports. Node names of
the folded graph are stable across ``torch.export.save``/``load``, so recipes key on them.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import fx

BN_OPS = {
    torch.ops.aten.batch_norm.default,
    torch.ops.aten._native_batch_norm_legit_no_training.default,
}
WEIGHTED_OPS = {torch.ops.aten.conv2d.default: "conv2d", torch.ops.aten.linear.default: "linear"}


@dataclass
class BNStats:
    """Per-channel output statistics of one BN layer: mean=beta, std=|gamma| (float32 [C])."""
    module: str
    mean: torch.Tensor
    std: torch.Tensor


@dataclass
class CanonicalModel:
    """A model ready to quantize.

    unfolded: GraphModule with BN nodes (what data-free synthesis matches statistics of).
    folded: ExportedProgram with BN folded into convs (what recipes and targets refer to).
    example_input: float32 tensor [1, C, H, W]. bn_stats: keyed by the folded graph's conv node.
    input_bounds: per-channel (lo, hi) float32 [C] of a valid input (pixels in [0, 1] after the
    model's normalisation), when the preprocessing is known.
    """
    name: str
    unfolded: fx.GraphModule
    folded: torch.export.ExportedProgram
    example_input: torch.Tensor
    bn_stats: dict[str, BNStats] = field(default_factory=dict)
    num_bn: int = 0
    input_bounds: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def graph_module(self) -> fx.GraphModule:
        """A fresh GraphModule of the folded program (safe to mutate)."""
        return self.folded.module()


def module_path(node: fx.Node) -> str:
    """The user's module path of a graph node (e.g. ``layer2.1.conv1``); '' for the top level."""
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else ""


def weighted_nodes(gm: fx.GraphModule) -> list[fx.Node]:
    """conv2d / linear call nodes of ``gm`` in graph order."""
    return [n for n in gm.graph.nodes if n.op == "call_function" and n.target in WEIGHTED_OPS]


def get_attr_tensor(gm: fx.GraphModule, node: fx.Node) -> torch.Tensor:
    """The tensor a ``get_attr`` node refers to."""
    obj = gm
    for part in node.target.split("."):
        obj = getattr(obj, part)
    return obj


def _bn_output_stats(gm: fx.GraphModule) -> tuple[dict[str, BNStats], int]:
    stats: dict[str, BNStats] = {}
    count = 0
    for n in gm.graph.nodes:
        if n.op != "call_function" or n.target not in BN_OPS:
            continue
        count += 1
        src, weight, bias = n.args[0], n.args[1], n.args[2]
        if not (isinstance(src, fx.Node) and src.target in WEIGHTED_OPS):
            continue
        gamma = get_attr_tensor(gm, weight).detach().float() if weight is not None else None
        beta = get_attr_tensor(gm, bias).detach().float() if bias is not None else None
        c = int(get_attr_tensor(gm, n.args[3]).numel())
        gamma = torch.ones(c) if gamma is None else gamma
        beta = torch.zeros(c) if beta is None else beta
        stats[src.name] = BNStats(module_path(n), beta.clone(), gamma.abs().clone())
    return stats, count


def _export_batch_polymorphic(model: torch.nn.Module, example_input: torch.Tensor) -> torch.export.ExportedProgram:
    """Export with a dynamic batch dimension (so calibration and evaluation run batched);
    models whose code fixes the batch size are exported as they are."""
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    x2 = example_input.expand(2, *example_input.shape[1:]).contiguous()
    try:
        return torch.export.export(model, (x2,), dynamic_shapes=({0: batch},))
    except Exception:
        return torch.export.export(model, (example_input,))


def canonicalize(model: torch.nn.Module | torch.export.ExportedProgram, example_input: torch.Tensor,
                 name: str = "model") -> CanonicalModel:
    """Export ``model`` (or take an ExportedProgram), fold BN, re-export.

    example_input: float32 [1, C, H, W]. Raises RuntimeError when the model cannot be exported.
    """
    from torchao.quantization.pt2e.utils import _fuse_conv_bn_

    if isinstance(model, torch.export.ExportedProgram):
        model = model.module(check_guards=False)
    else:
        model = model.eval()
    ep = _export_batch_polymorphic(model, example_input)
    unfolded = ep.module()
    bn_stats, num_bn = _bn_output_stats(unfolded)
    folded_gm = copy.deepcopy(unfolded)
    _fuse_conv_bn_(folded_gm)
    folded = _export_batch_polymorphic(folded_gm, example_input)
    return CanonicalModel(name, unfolded, folded, example_input, bn_stats, num_bn)
