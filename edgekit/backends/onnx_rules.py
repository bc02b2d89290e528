"""Rules checkers for QDQ ONNX models: what TensorRT's explicit quantization and Qualcomm's HTP
accept, checked on the file (any ONNX, edgekit's or a user's), so a model is refused here,
naming the node and the rule, instead of failing in the vendor's builder on the device.

TensorRT (developer guide, "Working with Quantized Types", explicit quantization):
symmetric Q/DQ only (a non-zero zero point fails: "TRT only supports symmetric quantization -
zeroPt must be all zeros"), int8 (weights [-127, 127]), per-tensor activations, per-channel
weights on the output-channel axis (Conv, Gemm: 0; ConvTranspose: 1; MatMul: the last), no
bias quantization, every QuantizeLinear followed by DequantizeLinear, INT4 only as weight-only
on Gemm/MatMul. Placement advice (no Q/DQ on a network output) is reported apart.

Qualcomm HTP (QNN's HTP op definitions; AIMET's HTP configs): per-tensor unsigned activations
(uint8 or uint16, any zero point), symmetric signed weights (int8 [-127, 127] or int4 [-7, 7],
zero point 0), per-channel on the output-channel axis, bias float or int32 with scale = input
scale x weight scale and zero point 0.

Imports only ``onnx`` and numpy (devices and the CLI's check run without torch).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

QDQ = ("QuantizeLinear", "DequantizeLinear")
#: consumer op -> (weight input index, output-channel axis of that weight for its rank)
_WEIGHT_AXIS = {"Conv": (1, lambda rank, node: 0), "ConvTranspose": (1, lambda rank, node: 1),
                "Gemm": (1, lambda rank, node: 0 if _attr(node, "transB", 0) else 1),
                "MatMul": (1, lambda rank, node: rank - 1)}
_BIAS_INPUT = {"Conv": 2, "ConvTranspose": 2, "Gemm": 2}
_FUSES_ACTIVATION = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add")
_PASS_THROUGH = ("Transpose", "Reshape", "Identity", "Unsqueeze", "Squeeze", "Flatten")


@dataclass(frozen=True)
class Violation:
    """One broken rule: the node, the rule's short name, and what is wrong (one line).
    severity: "error" (the vendor's tools refuse or mis-run it) or "advice" (it runs, slower)."""
    node: str
    rule: str
    detail: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"node {self.node}: {self.detail} [{self.rule}]"


def _attr(node, name: str, default=None):
    from onnx import helper
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


class QdqGraph:
    """An ONNX graph indexed for the checks: initializers (numpy), producers, consumers."""

    def __init__(self, model) -> None:
        from onnx import numpy_helper
        g = model.graph
        self.model = model
        self.inits = {t.name: t for t in g.initializer}
        self._arrays: dict[str, np.ndarray] = {}
        self._numpy = numpy_helper.to_array
        for n in g.node:  # Constant nodes hold initializers too
            if n.op_type == "Constant" and n.output:
                t = _attr(n, "value")
                if t is not None:
                    self.inits[n.output[0]] = t
        self.producer = {o: n for n in g.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in g.node:
            for i, name in enumerate(n.input):
                self.consumers.setdefault(name, []).append((n, i))
        self.outputs = {o.name for o in g.output}
        self.nodes = list(g.node)

    def array(self, name: str) -> np.ndarray | None:
        """The value of an initializer or Constant, else None."""
        if name not in self.inits:
            return None
        if name not in self._arrays:
            self._arrays[name] = np.asarray(self._numpy(self.inits[name]))
        return self._arrays[name]

    def elem_type(self, name: str) -> int | None:
        t = self.inits.get(name)
        return t.data_type if t is not None else None

    def integer_type(self, node) -> str:
        """The integer type of a Q/DQ node ("INT8", "UINT8", "INT4", ...): its zero point's type,
        else (opset 21) its output_dtype, else the type of a DQ's constant input, else UINT8 (the
        ONNX default of QuantizeLinear without a zero point)."""
        from onnx import TensorProto
        if len(node.input) > 2 and node.input[2]:
            t = self.elem_type(node.input[2])
            if t is not None:
                return TensorProto.DataType.Name(t)
        if node.op_type == "QuantizeLinear" and _attr(node, "output_dtype", 0):
            return TensorProto.DataType.Name(_attr(node, "output_dtype"))
        if node.op_type == "DequantizeLinear":
            t = self.elem_type(node.input[0])
            if t is not None:
                return TensorProto.DataType.Name(t)
            src = self.producer.get(node.input[0])
            if src is not None and src.op_type == "QuantizeLinear":
                return self.integer_type(src)
        return "UINT8"

    def zero_point(self, node) -> np.ndarray:
        if len(node.input) > 2 and node.input[2]:
            zp = self.array(node.input[2])
            if zp is not None:
                return zp
        return np.zeros(1, np.int64)

    def weight_consumers(self, name: str) -> list[tuple]:
        """(op node, input index) reading ``name``, following shape-only ops (Transpose, Reshape)."""
        out, todo = [], [name]
        while todo:
            for node, i in self.consumers.get(todo.pop(), []):
                if node.op_type in _PASS_THROUGH:
                    todo.extend(node.output)
                else:
                    out.append((node, i))
        return out

    def is_constant(self, name: str) -> bool:
        return name in self.inits


def _scale_is_vector(g: QdqGraph, node) -> bool:
    s = g.array(node.input[1])
    return s is not None and s.size > 1


def _common(g: QdqGraph) -> list[Violation]:
    """Rules both vendors share: positive finite scales, Q feeds DQ, DQ of an activation reads a Q."""
    out = []
    for n in g.nodes:
        if n.op_type not in QDQ:
            continue
        s = g.array(n.input[1])
        if s is None:
            out.append(Violation(n.name, "constant-scale", "the scale is computed, not a constant"))
        elif not (np.all(np.isfinite(s)) and np.all(s > 0)):
            out.append(Violation(n.name, "positive-scale", "a scale is zero, negative or not finite"))
        if n.op_type == "QuantizeLinear":
            bad = [c.op_type for c, _ in g.consumers.get(n.output[0], []) if c.op_type != "DequantizeLinear"]
            if bad or n.output[0] in g.outputs:
                out.append(Violation(n.name, "q-feeds-dq", "its integers go to "
                                     f"{bad[0] if bad else 'the network output'}, not to a DequantizeLinear: "
                                     "the pair cannot be fused"))
        elif not g.is_constant(n.input[0]):
            src = g.producer.get(n.input[0])
            if src is None or src.op_type != "QuantizeLinear":
                out.append(Violation(n.name, "dq-reads-q", "it dequantizes a computed tensor that no "
                                     "QuantizeLinear produced"))
    return out


def _weights(g: QdqGraph, allowed: dict[str, tuple[int, int]], where: str) -> list[Violation]:
    """Weight DQs (constant integer input feeding a Conv/Gemm/MatMul weight): type in
    ``allowed`` (type -> integer range), zero point 0, per-channel only on the output-channel
    axis. Bias DQs are reported by the callers."""
    out = []
    for n in g.nodes:
        if n.op_type != "DequantizeLinear" or not g.is_constant(n.input[0]):
            continue
        uses = g.weight_consumers(n.output[0])
        weight_uses = [(c, i) for c, i in uses if c.op_type in _WEIGHT_AXIS and i == _WEIGHT_AXIS[c.op_type][0]]
        if not weight_uses:
            continue
        kind = g.integer_type(n)
        if kind not in allowed:
            out.append(Violation(n.name, "weight-type", f"{kind} weights; {where} takes "
                                 f"{' or '.join(allowed)} weights"))
            continue
        if np.any(g.zero_point(n) != 0):
            out.append(Violation(n.name, "symmetric-weights", "the weight's zero point is not all zeros"))
        w = g.array(n.input[0])
        lo, hi = allowed[kind]
        if w is not None and w.size and (int(w.min()) < lo or int(w.max()) > hi):
            out.append(Violation(n.name, "weight-range", f"{kind} weight values reach [{int(w.min())}, "
                                 f"{int(w.max())}]; {where} takes [{lo}, {hi}] (symmetric, narrow range)"))
        if _scale_is_vector(g, n) and w is not None:
            axis = _attr(n, "axis", 1) % max(w.ndim, 1)
            for c, _ in weight_uses:
                want = _WEIGHT_AXIS[c.op_type][1](w.ndim, c)
                if axis != want:
                    out.append(Violation(n.name, "per-channel-axis", f"per-channel scales on axis {axis} of "
                                         f"the weight of {c.op_type} {c.name}; the output channels are axis {want}"))
    return out


def _biases(g: QdqGraph) -> list[tuple]:
    """(DQ node, its consumer) for every DQ feeding a Conv/Gemm bias input."""
    out = []
    for n in g.nodes:
        if n.op_type != "DequantizeLinear":
            continue
        for c, i in g.consumers.get(n.output[0], []):
            if _BIAS_INPUT.get(c.op_type) == i:
                out.append((n, c))
    return out


def tensorrt_violations(model) -> list[Violation]:
    """What TensorRT's explicit quantization refuses in ``model`` (an onnx.ModelProto), and
    placement advice (severity "advice"). Empty: a strongly typed engine can be built from it."""
    g = QdqGraph(model)
    out = _common(g)
    biases = _biases(g)
    bias_nodes = {dq.name for dq, _ in biases}
    for n in g.nodes:
        if n.op_type not in QDQ or n.name in bias_nodes:  # a quantized bias: reported once, below
            continue
        kind = g.integer_type(n)
        weight = n.op_type == "DequantizeLinear" and g.is_constant(n.input[0])
        if kind == "INT4":
            uses = g.weight_consumers(n.output[0]) if weight else []
            if not uses or any(c.op_type not in ("MatMul", "Gemm") or i != 1 for c, i in uses):
                out.append(Violation(n.name, "int4-weight-only", "INT4 Q/DQ: TensorRT runs INT4 only as "
                                     "weight-only quantization of a Gemm/MatMul weight; use 8-bit here"))
            continue
        if kind not in ("INT8", "FLOAT8E4M3FN"):
            out.append(Violation(n.name, "int8-only", f"{kind} Q/DQ; TensorRT takes INT8 (or FP8) "
                                 "(a QuantizeLinear without a zero point is UINT8)"))
            continue
        if np.any(g.zero_point(n) != 0):
            out.append(Violation(n.name, "symmetric-only", "non-zero zero point: TensorRT only supports "
                                 "symmetric quantization (zero points must be all zeros)"))
        if not weight and _scale_is_vector(g, n):
            out.append(Violation(n.name, "per-tensor-activations", "per-channel scales on an activation; "
                                 "TensorRT quantizes activations per-tensor"))
    out += [v for v in _weights(g, {"INT8": (-127, 127), "INT4": (-8, 7)}, "TensorRT") if v.rule != "weight-type"]
    for dq, c in biases:
        out.append(Violation(dq.name, "no-bias-quantization", f"the bias of {c.op_type} {c.name} is "
                             "quantized; TensorRT takes a float bias"))
    for n in g.nodes:
        if n.op_type == "DequantizeLinear" and n.output[0] in g.outputs:
            out.append(Violation(n.name, "no-qdq-on-output", f"network output {n.output[0]} is quantized; "
                                 "TensorRT's placement leaves outputs in float", "advice"))
    return out


def qnn_htp_violations(model) -> list[Violation]:
    """What Qualcomm's HTP refuses in ``model`` (an onnx.ModelProto): signed or per-channel
    activations, asymmetric or out-of-range weights, per-channel on the wrong axis, a quantized
    bias whose scale is not input scale x weight scale."""
    g = QdqGraph(model)
    out = _common(g)
    for n in g.nodes:
        if n.op_type != "QuantizeLinear":
            continue
        kind = g.integer_type(n)
        if kind not in ("UINT8", "UINT16"):
            out.append(Violation(n.name, "unsigned-activations", f"{kind} activations; HTP takes UINT8 or "
                                 "UINT16 (add 2^(bits-1) to a signed zero point: the same values)"))
        if _scale_is_vector(g, n):
            out.append(Violation(n.name, "per-tensor-activations", "per-channel scales on an activation; "
                                 "HTP quantizes activations per-tensor"))
    out += _weights(g, {"INT8": (-127, 127), "INT4": (-7, 7)}, "HTP")
    for dq, c in _biases(g):
        if g.integer_type(dq) != "INT32" or np.any(g.zero_point(dq) != 0):
            out.append(Violation(dq.name, "int32-bias", f"the bias of {c.op_type} {c.name} is "
                                 f"{g.integer_type(dq)}; HTP takes an int32 bias with zero point 0"))
            continue
        x, w = (g.producer.get(c.input[k]) for k in (0, 1))
        if x is None or w is None or x.op_type != "DequantizeLinear" or w.op_type != "DequantizeLinear":
            continue
        want = g.array(x.input[1]) * g.array(w.input[1])
        if not np.allclose(g.array(dq.input[1]), want, rtol=1e-5):
            out.append(Violation(dq.name, "bias-scale", f"the bias scale of {c.op_type} {c.name} is not "
                                 "input scale x weight scale"))
    for n in g.nodes:
        if n.op_type in QDQ or n.op_type in _PASS_THROUGH or n.op_type in ("Constant", "Shape"):
            continue
        floats = [i for i in n.input if i and not g.is_constant(i) and not _dequantized(g, i)]
        src = g.producer.get(n.input[0]) if n.input else None
        if n.op_type in ("Relu", "Clip") and src is not None and src.op_type in _FUSES_ACTIVATION:
            continue  # conv/gemm/add + ReLU: one HTP op (the converter fuses them)
        if floats:
            out.append(Violation(n.name, "quantized-inputs", f"{n.op_type} reads the float tensor {floats[0]}: "
                                 "HTP runs it in float or on the CPU", "advice"))
    return out


def _dequantized(g: QdqGraph, name: str) -> bool:
    """Whether ``name`` comes from a DequantizeLinear, through shape-only ops."""
    src = g.producer.get(name)
    while src is not None and src.op_type in _PASS_THROUGH:
        src = g.producer.get(src.input[0])
    return src is not None and src.op_type == "DequantizeLinear"


def load_onnx(path: Path):
    """The ModelProto at ``path`` (without external data); ValueError when it is not ONNX."""
    import onnx
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise ValueError(f"{Path(path).name} is not an ONNX model ({str(e).splitlines()[0][:120]})") from None
