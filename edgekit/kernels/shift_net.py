"""A multiplication-free reference kernel for shift networks (recipes whose conv/linear layers
have scheme "pow2", ``edgekit.quant.shift``), in numpy.

It runs the whole network the way an int8 runtime runs the recipe's quantized program (the
graph ``edgekit.quant.simulate.quantize_with_recipe`` builds: quantize/dequantize where the
target's quantizer puts them), with the weighted layers in integers and no multiplication:

- the input of a shift layer is int8 with a zero point: ``x = q - zp`` (int32);
- every weight is ``s * 2^p``: for each exponent p the layer sums the inputs whose weight is
  ``+2^p`` and subtracts those whose weight is ``-2^p`` (a selection: numpy forms the selected
  sums as a matmul against the +1/-1/0 mask, exact in float64, i.e. additions and subtractions),
  shifts that partial sum left by p and adds it to the int32 accumulator;
- the bias is added as int32 (``round(b / (s_in * alpha_c))``, as XNNPACK and TFLite store it);
- one requantisation per output element: ``acc * s_in * alpha_c`` (the only multiply, per output,
  not per weight), then the ops between this layer and the next quantize (ReLU, add, mean) in
  float32 and the quantize's rounding to int8, as the runtime does.

:func:`op_counts` counts what a device would execute per inference: the multiplications the
shift layers replace (one per nonzero weight and output), their additions and shifts (one per
output and exponent used by its channel), and the requantisation multiplies.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import fx

from edgekit.models.canonical import get_attr_tensor
from edgekit.quant.recipe import POW2, QuantRecipe

_Q = torch.ops.quantized_decomposed
_aten = torch.ops.aten


class _Quantized:
    """An int8 tensor and its (scale, zero point)."""

    def __init__(self, q: np.ndarray, scale: float, zp: int) -> None:
        self.q, self.scale, self.zp = q, scale, zp


def _im2col(x: np.ndarray, kh: int, kw: int, stride, padding, dilation) -> tuple[np.ndarray, int, int]:
    """[N, C, H, W] int32 -> patches [N, C*kh*kw, L] and the output size."""
    n, c, h, w = x.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i * dh:i * dh + sh * oh:sh, j * dw:j * dw + sw * ow:sw]
    return cols.reshape(n, c * kh * kw, oh * ow), oh, ow


def shift_accumulate(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Sum over k of x[..., k] * w[c, k] with no multiplication by a weight: ``x`` int32 [N, K, L]
    (or [N, K]), ``w`` int [C, K] of signed powers of two (or 0). Returns int32 [N, C, L] (or
    [N, C]). For each exponent p: (sum of x where w = +2^p) - (sum where w = -2^p), shifted by p."""
    acc = None
    mags = np.abs(w)
    for p in sorted({int(v).bit_length() - 1 for v in np.unique(mags) if v}):
        pos = (w == (1 << p)).astype(np.int32)
        neg = (w == -(1 << p)).astype(np.int32)
        part = _select_sum(pos - neg, x)  # selected sums (additions and subtractions)
        part = np.left_shift(part, p)
        acc = part if acc is None else acc + part
    if acc is None:
        shape = (x.shape[0], w.shape[0]) + x.shape[2:]
        acc = np.zeros(shape, np.int32)
    return acc.astype(np.int32)


def _select_sum(m: np.ndarray, x: np.ndarray) -> np.ndarray:
    """sum_k m[c, k] * x[n, k, ...] for ``x`` [N, K, L] or [N, K], as int64. Computed as a float64
    matmul (BLAS), which is exact here: every partial sum is an integer far below 2^53."""
    mf, xf = m.astype(np.float64), x.astype(np.float64)
    return np.rint(np.matmul(mf, xf) if x.ndim == 3 else np.matmul(xf, mf.T)).astype(np.int64)


def _multiply_accumulate(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The int8 layer's sum of products (multiplications), int32 like :func:`shift_accumulate`."""
    return _select_sum(w.astype(np.int32), x).astype(np.int32)


def _weight(gm: fx.GraphModule, node: fx.Node, recipe: QuantRecipe, layer: str) -> tuple[np.ndarray, np.ndarray]:
    """The layer's integer weights [C_out, ...] and alpha [C_out] from its dequantize node."""
    dq = node
    q = get_attr_tensor(gm, dq.args[0]).numpy().astype(np.int32)
    scale = get_attr_tensor(gm, dq.args[1]).numpy().astype(np.float64) if isinstance(dq.args[1], fx.Node) \
        else np.full(q.shape[0], float(dq.args[1]))
    return q, scale


def run_shift_network(gm: fx.GraphModule, recipe: QuantRecipe, x: np.ndarray) -> np.ndarray:
    """Outputs float32 [N, ...] of the converted quantized program ``gm`` (quantize/dequantize
    ops, integer weights folded: ``quantize_with_recipe(..., fold_quantize=True)``) on ``x``
    float32 [N, C, H, W], its "pow2" conv/linear layers computed by :func:`shift_accumulate`
    (layers kept in int8 by ``first_last = "int8"`` multiply).
    Raises NotImplementedError naming an op the kernel does not run."""
    env: dict[fx.Node, object] = {}
    pow2 = {n for n, lq in recipe.layers.items() if lq.weight.scheme == POW2}

    def val(a):
        if isinstance(a, fx.Node):
            v = env[a]
            return v
        if isinstance(a, (list, tuple)):
            return type(a)(val(b) for b in a)
        return a

    for n in gm.graph.nodes:
        if n.op == "placeholder":
            env[n] = x.astype(np.float32)
        elif n.op == "get_attr":
            env[n] = get_attr_tensor(gm, n).detach().numpy()
        elif n.op == "output":
            out = val(n.args[0])
            out = out[0] if isinstance(out, (list, tuple)) else out
            return np.asarray(out, np.float32)
        elif n.target == _Q.quantize_per_tensor.default:
            xf, scale, zp, lo, hi = val(n.args[0]), float(n.args[1]), int(n.args[2]), n.args[3], n.args[4]
            q = np.clip(np.round(xf.astype(np.float32) / np.float32(scale)) + zp, lo, hi).astype(np.int32)
            env[n] = _Quantized(q, scale, zp)
        elif n.target == _Q.dequantize_per_tensor.default:
            src = env[n.args[0]]
            env[n] = ((src.q - src.zp).astype(np.float32) * np.float32(src.scale)) if isinstance(src, _Quantized) \
                else val(n.args[0])
        elif n.target == _Q.dequantize_per_channel.default:
            env[n] = n  # resolved by the layer that reads it
        elif n.target in (_aten.conv2d.default, _aten.linear.default):
            env[n] = _layer(gm, n, env, recipe, pow2)
        elif n.target in (_aten.relu.default, _aten.relu_.default):
            env[n] = np.maximum(val(n.args[0]), 0)
        elif n.target == _aten.hardtanh.default:
            env[n] = np.clip(val(n.args[0]), n.args[1] if len(n.args) > 1 else -1.0, n.args[2] if len(n.args) > 2 else 1.0)
        elif n.target in (_aten.add.Tensor, _aten.add_.Tensor):
            env[n] = (val(n.args[0]) + val(n.args[1])).astype(np.float32)
        elif n.target == _aten.adaptive_avg_pool2d.default:
            if list(n.args[1]) != [1, 1]:
                raise NotImplementedError("adaptive_avg_pool2d to a size other than 1x1")
            env[n] = val(n.args[0]).mean((2, 3), keepdims=True, dtype=np.float32)
        elif n.target == _aten.mean.dim:
            env[n] = val(n.args[0]).mean(tuple(n.args[1]), keepdims=bool(n.args[2]) if len(n.args) > 2 else False,
                                         dtype=np.float32)
        elif n.target in (_aten.flatten.using_ints, _aten.view.default, _aten.reshape.default):
            a = val(n.args[0])
            env[n] = a.reshape(a.shape[0], -1) if n.target == _aten.flatten.using_ints else a.reshape(n.args[1])
        elif n.op == "call_module" or (n.op == "call_function" and "_assert" in str(n.target)):
            env[n] = None
        else:
            raise NotImplementedError(f"the shift kernel does not run {n.target} ({n.name})")
    raise ValueError("the program has no output")


def _layer(gm, n: fx.Node, env, recipe: QuantRecipe, pow2: set[str]) -> np.ndarray:
    inp, wdq = n.args[0], n.args[1]
    src = env.get(inp.args[0]) if isinstance(inp, fx.Node) and inp.target == _Q.dequantize_per_tensor.default else None
    if not isinstance(src, _Quantized) or not (
            isinstance(wdq, fx.Node) and wdq.target == _Q.dequantize_per_channel.default):
        raise NotImplementedError(f"{n.name}: the shift kernel runs layers with int8 inputs and per-channel weights")
    q, alpha = _weight(gm, wdq, recipe, n.name)
    # a layer kept in int8 (first_last = "int8") multiplies: the one place the network does
    accumulate = shift_accumulate if n.name in pow2 else _multiply_accumulate
    xq = (src.q - src.zp).astype(np.int32)
    bias = get_attr_tensor(gm, n.args[2]).detach().numpy().astype(np.float64) if len(n.args) > 2 and n.args[2] is not None else None
    real = src.scale * alpha  # per output channel
    if n.target == _aten.linear.default:
        acc = accumulate(xq, q)  # [N, C]
        shape = (1, -1)
    else:
        stride, padding = (list(n.args[3]) if len(n.args) > 3 else [1, 1]), (list(n.args[4]) if len(n.args) > 4 else [0, 0])
        dilation = list(n.args[5]) if len(n.args) > 5 else [1, 1]
        groups = n.args[6] if len(n.args) > 6 else 1
        cout, cin_g, kh, kw = q.shape
        outs = []
        for g in range(groups):
            cols, oh, ow = _im2col(xq[:, g * cin_g:(g + 1) * cin_g], kh, kw, stride, padding, dilation)
            wg = q[g * (cout // groups):(g + 1) * (cout // groups)].reshape(cout // groups, -1)
            outs.append(accumulate(cols, wg))
        acc = np.concatenate(outs, 1).reshape(xq.shape[0], cout, oh, ow)
        shape = (1, -1, 1, 1)
    if bias is not None:
        acc = acc + np.round(bias / real).astype(np.int32).reshape(shape)
    return (acc * real.reshape(shape)).astype(np.float32)  # the requantisation: one multiply per output


def op_counts(gm: fx.GraphModule, recipe: QuantRecipe) -> dict[str, int]:
    """Per inference of one image (the folded float graph ``gm`` gives the output sizes):
    ``macs`` (of all conv/linear layers, zeros included: an int8 or FP32 network's), ``multiplications_replaced`` (MACs of the "pow2" layers with a nonzero weight), ``adds``
    (one per such MAC, plus one bias add per output), ``shifts`` (one per output and exponent
    its channel uses), ``requantization_multiplies`` (one per output of those layers), and
    ``int8_multiplies`` (MACs of layers kept in int8)."""
    out = dict.fromkeys(("macs", "multiplications_replaced", "adds", "shifts", "requantization_multiplies",
                         "int8_multiplies"), 0)
    nodes = {n.name: n for n in gm.graph.nodes}
    for name, lq in recipe.layers.items():
        node = nodes[name]
        shape = node.meta["val"].shape
        per_channel_outputs = int(np.prod(shape[2:])) if len(shape) > 2 else 1
        out["macs"] += int(get_attr_tensor(gm, node.args[1]).numel()) * per_channel_outputs
        if lq.weight.scheme != POW2:
            w = get_attr_tensor(gm, node.args[1])
            out["int8_multiplies"] += int(w[0].numel()) * int(w.shape[0]) * per_channel_outputs
            continue
        q = recipe.rounded_weights[name].reshape(recipe.rounded_weights[name].shape[0], -1).numpy()
        nonzero = (q != 0).sum(1)
        exps = [len({int(abs(v)).bit_length() for v in row if v}) for row in q]
        out["multiplications_replaced"] += int(nonzero.sum()) * per_channel_outputs
        out["adds"] += int(nonzero.sum() + len(nonzero)) * per_channel_outputs
        out["shifts"] += int(sum(exps)) * per_channel_outputs
        out["requantization_multiplies"] += len(nonzero) * per_channel_outputs
    return out
