"""QuantRecipe: the data an algorithm hands to a target.

Keys are node names of the canonical (BN-folded, exported) graph. ``layers`` holds one entry
per conv2d/linear: its weight quantization (bits, granularity, symmetry, per-channel scales and
zero points). ``activations`` holds one entry per tensor a full-integer backend may quantize
(the graph input and every op output): bits, scale, zero point and the float range it came from.
A target quantizes the tensors its own quantizer annotates and reads their parameters here.
"""
from __future__ import annotations

import json
from fnmatch import fnmatchcase
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import fx

from edgekit.models.canonical import WEIGHTED_OPS, module_path

#: ops whose output lies in [0, 1] whatever the input: their output takes that fixed range
#: (``edgekit.quant.qparams.fill_unit_interval``; TFLite's int8 SOFTMAX and LOGISTIC require it)
FIXED_RANGE_OPS = {torch.ops.aten.softmax.int, torch.ops.aten._softmax.default, torch.ops.aten.sigmoid.default}

#: TensorQuant.scheme of shift weights: signed powers of two times a per-channel scale
POW2 = "pow2"
#: TensorQuant.scheme of PTQ4ViT's twin-uniform activations (``edgekit.quant.qparams.twin_fake_quant``)
TWIN = "twin_uniform"
#: ops whose output takes a twin-uniform quantizer (PTQ4ViT, Sec. 4.1: post-softmax and post-GELU;
#: SiLU's output has GELU's shape), each with the minimum of its output over the reals
TWIN_OPS = {torch.ops.aten.softmax.int: 0.0, torch.ops.aten._softmax.default: 0.0,
            torch.ops.aten.gelu.default: -0.16997, torch.ops.aten.silu.default: -0.27846}

RECIPE_VERSION = 1
ROUNDED_SUFFIX = ".weights.npz"
BIAS_KEY = "bias/"  # corrected biases' keys in the .npz


def rounded_path(recipe_path: Path) -> Path:
    """Where a recipe's rounded integer weights live: ``recipe.json`` -> ``recipe.weights.npz``."""
    p = Path(recipe_path)
    return p.with_name(p.stem + ROUNDED_SUFFIX)


def int_range(bits: int, signed: bool = True, narrow: bool = False) -> tuple[int, int]:
    """(quant_min, quant_max) of a ``bits``-bit integer; ``narrow`` drops the most negative value
    (symmetric weights use [-127, 127] at 8 bits, as XNNPACK and TFLite require)."""
    if signed:
        return -(2 ** (bits - 1)) + int(narrow), 2 ** (bits - 1) - 1
    return 0, 2 ** bits - 1


@dataclass
class TensorQuant:
    """Quantization of one tensor: q = clamp(round(x / scale) + zero_point, quant_min, quant_max).

    scale: float32 per channel (len C, along ``axis``) or per tensor (len 1); zero_point: int.
    range_min/range_max: the float range the parameters were derived from (activations).
    """
    bits: int
    granularity: str  # "per_tensor" | "per_channel"
    symmetric: bool
    quant_min: int
    quant_max: int
    axis: int | None = None
    scale: list[float] = field(default_factory=list)
    zero_point: list[int] = field(default_factory=list)
    range_min: float | None = None
    range_max: float | None = None
    # how the integers map to values: "affine" (scale * (q - zero_point)); "pow2" (shift
    # weights, ``edgekit.quant.shift``: every integer a signed power of two, or 0, in the ``bits``
    # carrier, coded in ``code_bits``); "twin_uniform" (PTQ4ViT's two-scale activations)
    scheme: str = "affine"
    code_bits: int | None = None  # pow2: bits of the stored code (sign + exponent); None: ``bits``

    @property
    def filled(self) -> bool:
        """True once scales and zero points are set."""
        return bool(self.scale)

    def scale_tensor(self) -> torch.Tensor:
        return torch.tensor(self.scale, dtype=torch.float32)

    def zero_point_tensor(self) -> torch.Tensor:
        return torch.tensor(self.zero_point, dtype=torch.int32)


@dataclass
class LayerQuant:
    """A weighted op (conv2d or linear) and its weight quantization."""
    module: str
    op: str
    weight: TensorQuant


@dataclass
class ActQuant:
    """An activation tensor (output of ``node``, or the graph input) and its quantization."""
    module: str
    quant: TensorQuant


@dataclass
class QuantRecipe:
    """Per-layer and per-tensor quantization of one canonical model (see the module docstring)."""
    method: str
    w_bits: int
    a_bits: int
    layers: dict[str, LayerQuant] = field(default_factory=dict)
    activations: dict[str, ActQuant] = field(default_factory=dict)
    version: int = RECIPE_VERSION
    # Integer weights an algorithm chose (learned rounding): node -> int8 tensor shaped like the
    # folded weight, within the layer's [quant_min, quant_max]. The deployed weight is
    # int_weight * scale. Saved beside recipe.json as ROUNDED_SUFFIX (.npz), not in the JSON.
    rounded_weights: dict[str, torch.Tensor] = field(default_factory=dict)
    # Float32 biases [C_out] that replace a layer's folded bias (bias correction): node -> tensor.
    # Saved in the same .npz as "bias/<node>".
    biases: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def filled(self) -> bool:
        return all(lq.weight.filled for lq in self.layers.values()) and all(
            a.quant.filled for a in self.activations.values())

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("rounded_weights")
        d.pop("biases")
        d["rounded_weights"] = sorted(self.rounded_weights)
        d["biases"] = sorted(self.biases)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "QuantRecipe":
        if d.get("version") != RECIPE_VERSION:
            raise ValueError(f"recipe version {d.get('version')} is not {RECIPE_VERSION}")
        return cls(d["method"], d["w_bits"], d["a_bits"],
                   {k: LayerQuant(v["module"], v["op"], TensorQuant(**v["weight"])) for k, v in d["layers"].items()},
                   {k: ActQuant(v["module"], TensorQuant(**v["quant"])) for k, v in d["activations"].items()})

    def save(self, path: Path) -> None:
        """Write the JSON to ``path`` and, when there are rounded weights or corrected biases,
        ``path``.npz beside it."""
        Path(path).write_text(json.dumps(self.to_dict()))
        if self.rounded_weights or self.biases:
            arrays = {k: v.to(torch.int8).numpy() for k, v in self.rounded_weights.items()}
            arrays.update({BIAS_KEY + k: v.float().numpy() for k, v in self.biases.items()})
            np.savez_compressed(rounded_path(path), **arrays)

    @classmethod
    def load(cls, path: Path) -> "QuantRecipe":
        """Read a recipe written by ``save``; raises ValueError when its rounded weights or
        corrected biases are missing."""
        d = json.loads(Path(path).read_text())
        recipe = cls.from_dict(d)
        names, biases = d.get("rounded_weights") or [], d.get("biases") or []
        if names or biases:
            npz = rounded_path(path)
            if not npz.exists():
                raise ValueError(f"{path} refers to rounded weights or biases but {npz.name} is missing")
            with np.load(npz) as z:
                recipe.rounded_weights = {k: torch.from_numpy(z[k].astype(np.int8)) for k in names}
                recipe.biases = {k: torch.from_numpy(z[BIAS_KEY + k].astype(np.float32)) for k in biases}
        return recipe

    def layer_bits(self) -> dict[str, int]:
        """Weight bit width per layer (a shift weight's code bits), keyed by the user's module path."""
        return {lq.module or node: lq.weight.code_bits or lq.weight.bits for node, lq in self.layers.items()}


def set_weight_bits(tq: TensorQuant, bits: int) -> None:
    """Give a weight entry ``bits`` (symmetric, narrow range); its scales must be refilled."""
    tq.bits = bits
    tq.quant_min, tq.quant_max = int_range(bits, narrow=True)


def set_act_bits(tq: TensorQuant, bits: int) -> None:
    """Give an activation entry ``bits`` (signed, affine); its scale must be refilled."""
    tq.bits = bits
    tq.quant_min, tq.quant_max = int_range(bits)


def activation_nodes(gm: fx.GraphModule) -> list[fx.Node]:
    """Nodes whose float tensor output a full-integer backend may quantize (input + op outputs)."""
    out = []
    for n in gm.graph.nodes:
        if n.op not in ("placeholder", "call_function"):
            continue
        val = n.meta.get("val")
        if isinstance(val, torch.Tensor) and val.is_floating_point():
            out.append(n)
    return out


def fixed_range_nodes(gm: fx.GraphModule) -> set[str]:
    """Names of the nodes whose output has the fixed range [0, 1] (``FIXED_RANGE_OPS``)."""
    return {n.name for n in gm.graph.nodes if n.op == "call_function" and n.target in FIXED_RANGE_OPS}


def plan_recipe(gm: fx.GraphModule, method: str, w_bits: int, a_bits: int,
                per_channel: bool = True, activation_symmetric: bool = False,
                overrides: dict[str, dict] | None = None, twin_uniform: bool = False) -> QuantRecipe:
    """The recipe's layout before calibration: bit widths, granularity and symmetry of every
    weight (symmetric, narrow range) and activation (signed; affine, or symmetric with zero
    point 0 when ``activation_symmetric``: TensorRT's explicit quantization needs it) of the
    canonical graph, then ``overrides`` (:func:`apply_overrides`). ``twin_uniform``: the outputs
    of ``TWIN_OPS`` take scheme ``TWIN`` (so targets that cannot run it refuse the plan before
    any calibration). Raises ValueError for a bad override."""
    recipe = QuantRecipe(method, w_bits, a_bits)
    wmin, wmax = int_range(w_bits, narrow=True)
    amin, amax = int_range(a_bits)
    for n in gm.graph.nodes:
        if n.op == "call_function" and n.target in WEIGHTED_OPS:
            gran = "per_channel" if per_channel else "per_tensor"
            recipe.layers[n.name] = LayerQuant(module_path(n), WEIGHTED_OPS[n.target], TensorQuant(
                w_bits, gran, True, wmin, wmax, 0 if per_channel else None))
    for n in activation_nodes(gm):
        recipe.activations[n.name] = ActQuant(module_path(n) or n.name, TensorQuant(
            a_bits, "per_tensor", activation_symmetric, amin, amax,
            scheme=TWIN if twin_uniform and n.op == "call_function" and n.target in TWIN_OPS else "affine"))
    if overrides:
        apply_overrides(recipe, gm, overrides)
    return recipe


OVERRIDE_KEYS = ("w_bits", "a_bits")


def _module_type(n: fx.Node) -> str | None:
    stack = n.meta.get("nn_module_stack") or {}
    if not stack:
        return None
    t = list(stack.values())[-1][1]
    return (t if isinstance(t, str) else getattr(t, "__name__", str(t))).rsplit(".", 1)[-1]


def _matches(pattern: str, node: str, module: str, mtype: str | None) -> bool:
    if pattern.startswith("type:"):
        return mtype == pattern[5:]
    return fnmatchcase(module, pattern) or fnmatchcase(node, pattern)


#: Genie's default (and anyone's with --override): the first and last weighted layers at 8 bits,
#: with the model input, the last layer's input and its output (Genie, Jeon et al. 2023, Sec. 5)
FIRST_LAST_8BIT = {"@first": {"w_bits": 8, "a_bits": 8}, "@last": {"w_bits": 8, "a_bits": 8}}


def _edge_layers(pattern: str, recipe: QuantRecipe, gm: fx.GraphModule) -> tuple[set[str], set[str]]:
    """Node names of the layers and activations ``@first`` / ``@last`` stand for: the first
    weighted layer and the model inputs; the last weighted layer, its inputs and its output."""
    names = list(recipe.layers)
    if not names:
        return set(), set()
    if pattern == "@first":
        return {names[0]}, {n.name for n in gm.graph.nodes if n.op == "placeholder"}
    last = next(n for n in gm.graph.nodes if n.name == names[-1])
    return {names[-1]}, {a.name for a in last.all_input_nodes if a.op != "get_attr"} | {names[-1]}


def apply_overrides(recipe: QuantRecipe, gm: fx.GraphModule, overrides: dict[str, dict]) -> None:
    """Per-module bit widths, torchao-style: ``{pattern: {"w_bits": b, "a_bits": b}}``. A pattern
    is a glob over the module path (``layer1.*``, ``fc``) or the graph node name (``conv2d_3``),
    ``type:Conv2d`` / ``type:Linear`` for a module type, or ``@first`` / ``@last`` for the first
    and last weighted layers (``a_bits``: the model input; the last layer's input and output);
    ``w_bits`` sets the weights of the matching conv/linear layers, ``a_bits`` the output tensors
    of the matching ops. Later patterns win. Raises ValueError for an unknown key, a bit width
    outside 2..8, or a pattern that matches nothing in the model (a typo)."""
    types = {n.name: _module_type(n) for n in gm.graph.nodes}
    for pattern, o in overrides.items():
        if not isinstance(o, dict) or not o or set(o) - set(OVERRIDE_KEYS):
            raise ValueError(f"override {pattern!r}: give {{'w_bits': B, 'a_bits': B}} (one or both), not {o!r}")
        for k, b in o.items():
            if not isinstance(b, int) or not 2 <= b <= 8:
                raise ValueError(f"override {pattern!r}: {k} {b!r} is not a bit width in 2..8")
        hit = False
        edge = _edge_layers(pattern, recipe, gm) if pattern in ("@first", "@last") else None
        for name, lq in recipe.layers.items():
            if "w_bits" in o and (name in edge[0] if edge else _matches(pattern, name, lq.module, types.get(name))):
                set_weight_bits(lq.weight, o["w_bits"])
                hit = True
        for name, aq in recipe.activations.items():
            if "a_bits" in o and (name in edge[1] if edge else _matches(pattern, name, aq.module, types.get(name))):
                set_act_bits(aq.quant, o["a_bits"])
                hit = True
        if not hit:
            raise ValueError(f"override {pattern!r} matches no layer or tensor of the model (module paths "
                             f"such as {', '.join(sorted({lq.module for lq in recipe.layers.values()})[:4])})")
