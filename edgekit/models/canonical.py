"""The canonical form every model is quantized in: an exported ATen graph with BN folded.

``canonicalize`` exports the model with ``torch.export``, records each BatchNorm layer's
affine parameters (beta, gamma: the per-channel mean and std of its output when its input
matches the running statistics), folds BN into the preceding conv with torchao's
``_fuse_conv_bn_`` (whitepaper Sec. 3.2, "batch norm folding"), rewrites two exact
equivalents into the forms int8 backends quantize (``quantizable_forms``), and re-exports. Node
names of the folded graph are stable across ``torch.export.save``/``load``, so recipes key on them.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import logging
import math
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
    example_input: float32 tensor [B, C, H, W] (B = ``batch`` for a program specialised to a
    static batch, else 1). bn_stats: keyed by the folded graph's conv node.
    input_bounds: per-channel (lo, hi) float32 [C] of a valid input (pixels in [0, 1] after the
    model's normalisation), when the preprocessing is known.
    batch: for a program whose code fixes its batch (a ``.pt2`` exported the usual way with
    static shapes, a forward that reshapes to the traced batch), that batch; every run then goes
    through chunks of exactly that many rows. None when the batch is dynamic.
    """
    name: str
    unfolded: fx.GraphModule
    folded: torch.export.ExportedProgram
    example_input: torch.Tensor
    bn_stats: dict[str, BNStats] = field(default_factory=dict)
    num_bn: int = 0
    input_bounds: tuple[torch.Tensor, torch.Tensor] | None = None
    batch: int | None = None  # the static batch the program is specialised to; None: dynamic batch
    input_prior: tuple[float, float] | None = None  # synthesis: the input's (mean, std); None: (0, 1)

    def run(self, fn, x: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """``fn`` (a module of this model's graph) over ``x`` float32 [N, ...] in chunks that
        the program accepts (see :func:`run_batched`)."""
        return run_batched(fn, x, chunk, self.batch)

    @property
    def graph_module(self) -> fx.GraphModule:
        """A fresh GraphModule of the folded program (safe to mutate)."""
        return self.folded.module()

    @functools.cached_property
    def content_hash(self) -> str:
        """sha256 of the model's graph and weights (``edgekit.cache.model_hash`` of ``unfolded``;
        the folded program is a function of it), computed once: the cache's model key."""
        from edgekit.cache import model_hash
        return model_hash(self.unfolded)


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


def set_attr_tensor(gm: fx.GraphModule, node: fx.Node, value: torch.Tensor) -> None:
    """Point the ``get_attr`` node at a new tensor ``value`` (cast to the old one's dtype; a
    Parameter stays a Parameter). A new tensor, not an in-place copy: the GraphModule may share
    storage with its ExportedProgram. Raises ValueError when the shapes differ."""
    old = get_attr_tensor(gm, node)
    if tuple(value.shape) != tuple(old.shape):
        raise ValueError(f"{node.target} has shape {tuple(old.shape)}, the new value {tuple(value.shape)}")
    owner_path, _, attr = node.target.rpartition(".")
    owner = gm.get_submodule(owner_path) if owner_path else gm
    new = value.detach().to(old.dtype)
    setattr(owner, attr, torch.nn.Parameter(new, requires_grad=False) if isinstance(old, torch.nn.Parameter) else new)


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


def _export_batch_polymorphic(model: torch.nn.Module,
                              example_input: torch.Tensor) -> tuple[torch.export.ExportedProgram, int | None]:
    """Export with a dynamic batch dimension (so calibration and evaluation run batched), and
    None; a model whose code fixes the batch (it reshapes to the traced batch size) is exported
    at the example's own batch, which is returned."""
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    x2 = example_input[:1].expand(2, *example_input.shape[1:]).contiguous()
    try:
        with _quiet_tracing():  # the failed attempt's fake-tensor errors are expected, not news
            ep = torch.export.export(model, (x2,), dynamic_shapes=({0: batch},))
            ep.module()(example_input[:1])  # a program whose ops fixed the batch fails here
        return ep, None
    except Exception:
        return torch.export.export(model, (example_input,)), int(example_input.shape[0])


@contextlib.contextmanager
def _quiet_tracing():
    names = ("torch._subclasses.fake_tensor", "torch.fx.experimental.symbolic_shapes", "torch._dynamo",
             "torch.export", "torch._export")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def run_batched(fn, x: torch.Tensor, chunk: int = 256, static_batch: int | None = None) -> torch.Tensor:
    """Apply ``fn`` to ``x`` (float32 [N, ...]) in chunks and concatenate the outputs along dim 0.

    With ``static_batch`` every call gets exactly that many rows: the last chunk is padded with
    copies of its final row and the padded outputs are dropped (the program was specialised to
    that batch). Without it, chunks of ``chunk`` rows."""
    with torch.no_grad():
        if not static_batch:
            return torch.cat([fn(x[i:i + chunk]) for i in range(0, len(x), chunk)])
        outs = []
        for i in range(0, len(x), static_batch):
            part = x[i:i + static_batch]
            outs.append(fn(pad_rows(part, static_batch))[:len(part)])
        return torch.cat(outs)


def pad_rows(x: torch.Tensor, n: int) -> torch.Tensor:
    """``x`` [k, ...] with k <= n filled up to ``n`` rows with copies of its last row (the batch
    a static-batch program takes); ``x`` itself when it already has ``n`` rows."""
    return x if len(x) >= n else torch.cat([x, x[-1:].expand(n - len(x), *x.shape[1:])])


def _scalar(gm: fx.GraphModule, a) -> float | None:
    """The value of ``a`` when it is a number or a one-element constant tensor, else None."""
    if isinstance(a, (int, float)) and not isinstance(a, bool):
        return float(a)
    if isinstance(a, fx.Node) and a.op == "get_attr":
        t = get_attr_tensor(gm, a)
        if t.numel() == 1 and t.is_floating_point():
            return float(t)
    return None


def quantizable_forms(gm: fx.GraphModule) -> int:
    """Rewrite, in place, ops int8 backends leave float into exact equivalents they quantize:
    ``clamp``/``clip`` with both bounds and ``relu6`` -> ``hardtanh`` (a clamp that shares its input's scale
    and zero point in XNNPACK, TFLite and QNN), and division by a constant c -> multiplication
    by 1/c (a quantized mul; a converter's hard-swish ``x * relu6(x + 3) / 6``). A float op
    between int8 ops costs a dequantize and a quantize, which can make an int8 model slower than
    its fp32 twin (issue 9, part 4). Returns the number of nodes rewritten."""
    clamps = {torch.ops.aten.clamp.default, torch.ops.aten.clip.default}
    n = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function":
            continue
        if node.target == torch.ops.aten.relu6.default and len(node.args) == 1:
            node.target, node.args = torch.ops.aten.hardtanh.default, (node.args[0], 0.0, 6.0)
            n += 1
        elif node.target in clamps and len(node.args) == 3 and not node.kwargs:
            lo, hi = node.args[1], node.args[2]
            if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and lo < hi:
                node.target, node.args = torch.ops.aten.hardtanh.default, (node.args[0], float(lo), float(hi))
                n += 1
        elif node.target == torch.ops.aten.div.Tensor and len(node.args) == 2 and not node.kwargs:
            c = _scalar(gm, node.args[1])
            if c is not None and c != 0 and math.isfinite(1.0 / c):
                node.target, node.args = torch.ops.aten.mul.Tensor, (node.args[0], 1.0 / c)
                n += 1
    if n:
        gm.graph.eliminate_dead_code()
        gm.recompile()
    return n


def canonicalize(model: torch.nn.Module | torch.export.ExportedProgram, example_input: torch.Tensor,
                 name: str = "model") -> CanonicalModel:
    """Export ``model`` (or take an ExportedProgram), fold BN, re-export.

    example_input: float32 [B, C, H, W], the batch it was exported for (an ExportedProgram's own
    input shape). Raises RuntimeError when the model cannot be exported.
    """
    from torchao.quantization.pt2e.utils import _fuse_conv_bn_

    if isinstance(model, torch.export.ExportedProgram):
        model = model.module(check_guards=False)
    else:
        model = model.eval()
    ep, batch = _export_batch_polymorphic(model, example_input)
    unfolded = ep.module()
    bn_stats, num_bn = _bn_output_stats(unfolded)
    folded_gm = copy.deepcopy(unfolded)
    _fuse_conv_bn_(folded_gm)
    quantizable_forms(folded_gm)
    if batch is None:
        folded, batch = _export_batch_polymorphic(folded_gm, example_input)
    else:
        folded = torch.export.export(folded_gm, (example_input,))
    return CanonicalModel(name, unfolded, folded, example_input, bn_stats, num_bn, batch=batch)
