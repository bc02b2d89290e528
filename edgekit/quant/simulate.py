"""The PyTorch simulation of a recipe: the canonical graph with quantize/dequantize at the points
a target's PT2E quantizer chooses, parameters from the recipe (a fake-quant reference model).
"""
from __future__ import annotations

import torch
from torch import fx
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.quantization.pt2e.quantizer import Quantizer

from edgekit.models.canonical import CanonicalModel, get_attr_tensor, run_batched, set_attr_tensor  # noqa: F401  (re-exported)
from edgekit.quant.observer import load_recipe_into
from edgekit.quant.qparams import twin_fake_quant
from edgekit.quant.recipe import TWIN, QuantRecipe


def quantize_with_recipe(canonical: CanonicalModel, recipe: QuantRecipe, quantizer: Quantizer,
                         fold_quantize: bool = False) -> fx.GraphModule:
    """prepare_pt2e with ``quantizer``, load ``recipe``'s parameters, convert_pt2e.

    Returns a GraphModule with quantize/dequantize ops: float32 [N, C, H, W] -> float32 outputs [N, ...].
    Raises ValueError when the recipe lacks a tensor the quantizer wants quantized.
    """
    twins = {k for k, a in recipe.activations.items() if a.quant.scheme == TWIN}
    if twins and fold_quantize:
        raise ValueError(f"twin-uniform activations ({sorted(twins)[0]}, ...) are simulation only: "
                         "no int8 runtime takes two scales on one tensor")
    prepared = prepare_pt2e(with_rounded_weights(canonical.graph_module, recipe), quantizer)
    load_recipe_into(prepared, recipe)
    converted = convert_pt2e(prepared, fold_quantize=fold_quantize)
    return twin_pairs(converted, recipe) if twins else converted


def twin_pairs(gm: fx.GraphModule, recipe: QuantRecipe) -> fx.GraphModule:
    """Replace each quantize_per_tensor -> dequantize_per_tensor pair on a tensor whose recipe
    entry is twin-uniform with :func:`edgekit.quant.qparams.twin_fake_quant` (PTQ4ViT, Sec. 4.1),
    its two scales from the recipe. Returns ``gm``, recompiled."""
    g = gm.graph
    for q, dq in _per_tensor_pairs(g):
        entry = recipe.activations.get(q.args[0].name)
        if entry is not None and entry.quant.scheme == TWIN:
            tq = entry.quant
            _replace_pair(g, dq, twin_fake_quant, (q.args[0], tq.scale[0], tq.scale[1], tq.bits, tq.range_min < 0))
    g.eliminate_dead_code()
    gm.recompile()
    return gm


_OPS = torch.ops.quantized_decomposed


def _per_tensor_pairs(g: fx.Graph):
    """(quantize_per_tensor, dequantize_per_tensor) node pairs: each dequantize that reads a quantize."""
    for dq in list(g.nodes):
        if dq.op == "call_function" and dq.target == _OPS.dequantize_per_tensor.default:
            q = dq.args[0]
            if isinstance(q, fx.Node) and q.op == "call_function" and q.target == _OPS.quantize_per_tensor.default:
                yield q, dq


def _replace_pair(g: fx.Graph, dq: fx.Node, fn, args: tuple) -> None:
    """Put ``fn(*args)`` where the dequantize ``dq`` was (its quantize is left to dead-code elimination)."""
    with g.inserting_before(dq):
        new = g.call_function(fn, args)
    new.meta = dict(dq.meta)
    dq.replace_all_uses_with(new)
    g.erase_node(dq)


def fake_quant(x: torch.Tensor, inv_scale: float, lo: float, hi: float, scale: float) -> torch.Tensor:
    """clamp(round(x * inv_scale), lo, hi) * scale on float32 ``x``, with lo = qmin - zero point
    and hi = qmax - zero point: quantize_per_tensor then dequantize_per_tensor in one buffer
    (adding and removing an integer zero point is exact in float32 for 8-bit values)."""
    return x.mul(inv_scale).round_().clamp_(lo, hi).mul_(scale)


@torch.no_grad()
def fused_for_simulation(gm: fx.GraphModule) -> fx.GraphModule:
    """The same function as a converted graph ``gm`` (convert_pt2e output), in fewer passes, for
    evaluating the simulation on many images: each quantize_per_tensor -> dequantize_per_tensor
    pair becomes :func:`fake_quant` (4 in-place passes instead of 8, bit for bit the same), and
    each weight's quantize -> dequantize per channel is computed once into a constant. Not for
    lowering (backends match the q/dq pairs). Returns ``gm``."""
    g = gm.graph
    for q, dq in _per_tensor_pairs(g):
        if (tuple(q.args[1:]) == tuple(dq.args[1:]) and not dq.kwargs
                and isinstance(q.args[1], float) and isinstance(q.args[2], int)):
            scale, zp, qmin, qmax = q.args[1:5]
            _replace_pair(g, dq, fake_quant, (q.args[0], 1.0 / scale, float(qmin - zp), float(qmax - zp), scale))
    for i, dq in enumerate(list(g.nodes)):
        if dq.op != "call_function" or dq.target != _OPS.dequantize_per_channel.default:
            continue
        q = dq.args[0]
        inputs = [a for a in (*q.args, *dq.args[1:]) if isinstance(a, fx.Node)] if isinstance(q, fx.Node) else []
        if (not isinstance(q, fx.Node) or q.target != _OPS.quantize_per_channel.default
                or not all(a.op == "get_attr" for a in inputs)):
            continue
        env = {a: get_attr_tensor(gm, a) for a in inputs}
        val = lambda args: tuple(env.get(a, a) if isinstance(a, fx.Node) else a for a in args)  # noqa: E731
        w = dq.target(q.target(*val(q.args)), *val(dq.args[1:]))
        name = f"_sim_weight_{i}"
        gm.register_buffer(name, w)
        with g.inserting_before(dq):
            const = g.get_attr(name)
        dq.replace_all_uses_with(const)
        g.erase_node(dq)
    g.eliminate_dead_code()
    gm.recompile()
    return gm


@torch.no_grad()
def with_rounded_weights(gm: fx.GraphModule, recipe: QuantRecipe) -> fx.GraphModule:
    """Write ``int_weight * scale`` into the weight of every layer the recipe has rounded weights
    for (so the target's quantize op reproduces exactly those integers), and the recipe's
    corrected biases into their layers; returns ``gm``.

    Raises ValueError when a rounded weight's or a bias's shape differs from the layer's.
    """
    if not recipe.rounded_weights and not recipe.biases:
        return gm
    nodes = {n.name: n for n in gm.graph.nodes}
    for name, b in recipe.biases.items():
        set_attr_tensor(gm, nodes[name].args[2], b)
    for name, q in recipe.rounded_weights.items():
        tq = recipe.layers[name].weight
        w = get_attr_tensor(gm, nodes[name].args[1])
        if tuple(q.shape) != tuple(w.shape):
            raise ValueError(f"rounded weight of {name} has shape {tuple(q.shape)}, the layer's is {tuple(w.shape)}")
        scale = tq.scale_tensor()
        if tq.granularity == "per_channel":
            scale = scale.view(-1, *([1] * (w.dim() - 1)))
        set_attr_tensor(gm, nodes[name].args[1], q.float() * scale)
    return gm


QDQ_OP_NAMES = ("quantize_per", "dequantize_per", "choose_qparams")  # quantize/dequantize op names contain these
_NO_COMPUTE = ("getitem", "view", "reshape", "flatten", "squeeze", "permute", "transpose", "clone",
               "contiguous", "expand", "_assert", "sym_size", "slice", "select")


def _compute_ops(converted: fx.GraphModule, annotated: bool) -> list[dict]:
    from edgekit.models.canonical import module_path

    out = []
    for n in converted.graph.nodes:
        name = str(n.target)
        if n.op != "call_function" or any(q in name for q in QDQ_OP_NAMES + _NO_COMPUTE) \
                or getattr(n.target, "__module__", None) == "_operator":  # a dynamic batch's shape arithmetic
            continue
        if (n.meta.get("quantization_annotation") is not None) == annotated:
            out.append({"op": name.removeprefix("aten.").split(".")[0], "module": module_path(n)})
    return out


def float_ops(converted: fx.GraphModule) -> list[dict]:
    """Compute ops of a quantized graph (prepare_pt2e/convert_pt2e with a target's quantizer)
    that the quantizer did not annotate, so they run in float between a dequantize and a
    quantize (ExecuTorch/XNNPACK runs them in fp32, in or out of the delegate). Returns
    [{op, module}] in graph order; data movement (view, flatten, ...) is not listed."""
    return _compute_ops(converted, annotated=False)


def integer_ops(converted: fx.GraphModule) -> list[dict]:
    """The compute ops the quantizer annotated (int8 inputs and outputs in the graph), the
    complement of :func:`float_ops`: [{op, module}] in graph order. Whether a runtime's kernel
    for the op is integer inside is the runtime's to say (LiteRT: ``tflite_ops``)."""
    return _compute_ops(converted, annotated=True)
