"""LayerNorm and SiLU written as the primitive ops a fully integer runtime has int8 kernels for.

TFLite has no LayerNorm or SiLU builtin: litert-torch lowers them to float MEAN, SQUARED_DIFFERENCE,
RSQRT, MUL, ADD and LOGISTIC ops, left in float between a dequantize and a quantize even when their
input and output are int8. TFLite does have int8 MEAN, SUB, MUL, ADD, RSQRT and LOGISTIC kernels,
so a placement that quantizes each primitive op gets LayerNorm and SiLU in integers:

    LayerNorm(x) = (x - mean(x)) * rsqrt(mean((x - mean(x))²) + eps) * weight + bias
    SiLU(x)      = x * sigmoid(x)

The op that replaces a LayerNorm or SiLU node keeps that node's name, so a recipe's parameters for
its output still apply; the inner nodes are named ``<node>_<step>``. All carry ``meta[DECOMPOSED]``
(the name of the node they came from). Their quantization parameters are
added to a recipe by :func:`edgekit.quant.complete.complete_recipe`.
"""
from __future__ import annotations

import copy

import torch
from torch import fx

DECOMPOSED = "edgekit_decomposed_from"
_aten = torch.ops.aten
DECOMPOSABLE = {_aten.layer_norm.default, _aten.silu.default}


def _fake(a, mode):
    """``a``'s value as a fake tensor of ``mode`` (shapes may be symbolic: a dynamic batch)."""
    if not isinstance(a, fx.Node):
        return a
    v = a.meta["val"]
    return v if getattr(v, "fake_mode", None) is mode else mode.from_tensor(v)


def _call(g: fx.Graph, src: fx.Node, step: str, target, args: tuple, last: bool = False) -> fx.Node:
    """A node ``target(*args)`` before ``src``, carrying its module metadata and shape."""
    n = g.call_function(target, args)
    n.meta = {k: v for k, v in src.meta.items() if k in ("nn_module_stack", "source_fn_stack", "stack_trace")}
    mode = src.meta["val"].fake_mode
    with mode:
        n.meta["val"] = target(*[_fake(a, mode) for a in args])
    if not last:  # the last op is renamed to ``src``'s name once ``src`` is gone
        n.name = g._graph_namespace.create_name(f"{src.name}_{step}", None)
    n.meta[DECOMPOSED] = src.name
    return n


def _layer_norm(g: fx.Graph, ln: fx.Node) -> fx.Node:
    x, shape = ln.args[0], ln.args[1]
    weight = ln.args[2] if len(ln.args) > 2 else ln.kwargs.get("weight")
    bias = ln.args[3] if len(ln.args) > 3 else ln.kwargs.get("bias")
    eps = ln.args[4] if len(ln.args) > 4 else ln.kwargs.get("eps", 1e-5)
    dims = list(range(-len(shape), 0))
    mean = _call(g, ln, "mean", _aten.mean.dim, (x, dims, True))
    centered = _call(g, ln, "centered", _aten.sub.Tensor, (x, mean))
    square = _call(g, ln, "square", _aten.mul.Tensor, (centered, centered))
    var = _call(g, ln, "var", _aten.mean.dim, (square, dims, True))
    var_eps = _call(g, ln, "var_eps", _aten.add.Tensor, (var, float(eps)))
    rstd = _call(g, ln, "rstd", _aten.rsqrt.default, (var_eps,))
    steps = [("normed", _aten.mul.Tensor, rstd)]
    steps += [("scaled", _aten.mul.Tensor, weight)] if weight is not None else []
    steps += [("shifted", _aten.add.Tensor, bias)] if bias is not None else []
    y = centered
    for i, (step, op, operand) in enumerate(steps):
        y = _call(g, ln, step, op, (y, operand), last=i == len(steps) - 1)
    return y


def _silu(g: fx.Graph, silu: fx.Node) -> fx.Node:
    x = silu.args[0]
    gate = _call(g, silu, "sigmoid", _aten.sigmoid.default, (x,))
    return _call(g, silu, "", _aten.mul.Tensor, (x, gate), last=True)


def decompose_norms(gm: fx.GraphModule) -> fx.GraphModule:
    """A copy of ``gm`` (an ATen graph from torch.export) with every ``aten.layer_norm`` and
    ``aten.silu`` node replaced by the primitive ops above; ``gm`` itself when it has none.
    Values are the same up to float rounding (the decomposition is the ops' definition)."""
    if not any(n.op == "call_function" and n.target in DECOMPOSABLE for n in gm.graph.nodes):
        return gm
    gm = copy.deepcopy(gm)
    g = gm.graph
    for n in g.nodes:  # LayerNorm's weight and bias: their shapes for the new nodes' metadata
        if n.op == "get_attr" and "val" not in n.meta:
            n.meta["val"] = gm.get_parameter(n.target) if n.target in dict(gm.named_parameters()) \
                else gm.get_buffer(n.target)
    for n in list(g.nodes):
        if n.op != "call_function" or n.target not in DECOMPOSABLE:
            continue
        with g.inserting_before(n):
            y = (_layer_norm if n.target == _aten.layer_norm.default else _silu)(g, n)
        n.replace_all_uses_with(y)
        name = n.name
        g.erase_node(n)
        y.name = name  # the replaced op's output keeps its name (and its recipe entry)
    g.lint()
    gm.recompile()
    return gm
