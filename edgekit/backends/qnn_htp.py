"""The ``qnn-htp`` target (Snapdragon Hexagon DSP/NPU through Qualcomm QNN).

It writes three files:
- ``model_qnn.onnx``: a QDQ ONNX (opset 21), the form Qualcomm's converters and AI Hub take:
  unsigned per-tensor activations (uint8, or uint16 with ``--a-bits 16``), symmetric signed
  weights (int8 in [-127, 127], or INT4 in [-7, 7] with ``--w-bits 4``), per-channel on the
  output-channel axis, float bias (the converter makes it int32 with scale = input scale x
  weight scale, as ``--bias_bitwidth 32`` asks);
- ``model_qnn.float.onnx``: the same graph without Q/DQ (weights dequantized);
- ``model_qnn.encodings``: an AIMET-style encodings JSON (format 0.6.1: per tensor
  ``bitwidth``, ``dtype``, ``is_symmetric``, ``scale``, ``offset``, ``min``, ``max``) keyed by
  the float ONNX's tensor names, for ``qnn-onnx-converter --input_network model_qnn.float.onnx
  --quantization_overrides model_qnn.encodings``: the user keeps edgekit's scales through
  Qualcomm's own tools.

The recipe's activations are signed (int8 with a zero point); uint8 = int8 + 128 with the zero
point moved by 128 is the same set of values, so the conversion is exact. Every artifact passes
the HTP rules checker (``edgekit.backends.onnx_rules.qnn_htp_violations``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgekit.backends.onnx_qdq import OnnxQdq, drop_unused_initializers, drop_value_info
from edgekit.backends.onnx_rules import QdqGraph, load_onnx, qnn_htp_violations
from edgekit.bundle import write_text_atomic
from edgekit.quant.recipe import QuantRecipe
from edgekit.registry import TARGETS

ENCODINGS_VERSION = "0.6.1"
_UNSIGNED = {"INT8": ("UINT8", 128, np.uint8), "INT16": ("UINT16", 32768, np.uint16)}


def to_unsigned(model) -> int:
    """Make every activation Q/DQ of the ONNX ``model`` unsigned (int8 -> uint8, int16 -> uint16)
    by moving its zero point by 2^(bits-1): the same values. Weight DQs (constant input) stay
    signed. Returns the number of nodes changed."""
    from onnx import numpy_helper
    g = QdqGraph(model)
    changed, outputs = 0, set()
    for n in g.nodes:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear") or g.is_constant(n.input[0]):
            continue
        kind = g.integer_type(n)
        if kind not in _UNSIGNED:
            continue
        _, shift, dtype = _UNSIGNED[kind]
        zp = g.zero_point(n).astype(np.int64) + shift
        name = f"{n.output[0]}_zero_point_u"
        model.graph.initializer.append(numpy_helper.from_array(zp.astype(dtype).reshape(g.zero_point(n).shape), name))
        if len(n.input) > 2:
            n.input[2] = name
        else:
            n.input.append(name)
        outputs.add(n.output[0])
        changed += 1
    drop_value_info(model, outputs)
    drop_unused_initializers(model)
    return changed


def _encoding(scale: float, zero_point: int, qmin: int, qmax: int, bits: int, symmetric: bool) -> dict:
    """One AIMET 0.6.1 encoding: float = scale * (q + offset) for q in [0, 2^bits - 1] (the
    unsigned view), so offset = qmin - zero_point, min = scale * offset, max = scale * (qmax - zero_point)."""
    offset = int(qmin) - int(zero_point)
    return {"bitwidth": bits, "dtype": "int", "is_symmetric": str(bool(symmetric)),
            "scale": float(scale), "offset": offset, "min": float(scale) * offset,
            "max": float(scale) * (int(qmax) - int(zero_point))}


_RANGES = {"UINT8": (0, 255, 8), "UINT16": (0, 65535, 16), "INT8": (-127, 127, 8), "INT4": (-7, 7, 4),
           "INT16": (-32768, 32767, 16)}


def float_model_and_encodings(model) -> tuple[object, dict]:
    """A copy of the QDQ ONNX ``model`` without Q/DQ (each activation pair becomes an Identity
    on its float tensor, each weight DQ a float initializer of the dequantized values, named as
    the DQ's output), and the AIMET encodings of its tensors: activation encodings keyed by the
    float tensor each QuantizeLinear read, param encodings by the weight initializer's name."""
    import copy

    from onnx import helper, numpy_helper
    out = copy.deepcopy(model)
    g = QdqGraph(out)
    acts, params, nodes = {}, {}, []
    for n in out.graph.node:
        if n.op_type == "QuantizeLinear":
            kind = g.integer_type(n)
            qmin, qmax, bits = _RANGES[kind]
            acts[n.input[0]] = [_encoding(float(g.array(n.input[1]).reshape(-1)[0]), int(g.zero_point(n).reshape(-1)[0]),
                                          qmin, qmax, bits, False)]
            continue
        if n.op_type == "DequantizeLinear" and g.is_constant(n.input[0]):
            kind = g.integer_type(n)
            qmin, qmax, bits = _RANGES[kind]
            q, s = g.array(n.input[0]).astype(np.float32), g.array(n.input[1]).astype(np.float32)
            axis = _axis(n, q.ndim)
            shape = [1] * q.ndim
            if s.size > 1:
                shape[axis] = -1
            w = q * s.reshape(shape)
            out.graph.initializer.append(numpy_helper.from_array(w.astype(np.float32), n.output[0]))
            params[n.output[0]] = [_encoding(float(v), 0, qmin, qmax, bits, True) for v in s.reshape(-1)]
            continue
        if n.op_type == "DequantizeLinear":
            q = g.producer.get(n.input[0])
            nodes.append(helper.make_node("Identity", [q.input[0] if q is not None else n.input[0]], [n.output[0]],
                                          name=n.name))
            continue
        nodes.append(n)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    del out.graph.value_info[:]
    drop_unused_initializers(out)
    return out, {"version": ENCODINGS_VERSION, "activation_encodings": acts, "param_encodings": params}


def _axis(node, rank: int) -> int:
    from onnx import helper
    for a in node.attribute:
        if a.name == "axis":
            return helper.get_attribute_value(a) % max(rank, 1)
    return 1 % max(rank, 1)


class QnnHtp(OnnxQdq):
    name = "qnn-htp"
    default_stem = "model_qnn"

    def rules(self, path: Path) -> list:
        """HTP's quantization rules broken by the ONNX at ``path`` (any QDQ ONNX)."""
        return qnn_htp_violations(load_onnx(path))

    def finish(self, model, recipe: QuantRecipe, path: Path) -> tuple[dict[str, Path], dict]:
        """Unsigned activations, the rules check (RuntimeError naming the node and the rule:
        a bug in edgekit's placement), then the float ONNX and the encodings beside ``path``."""
        import onnx

        to_unsigned(model)
        bad = qnn_htp_violations(model)
        if bad:
            raise RuntimeError(f"the QNN HTP ONNX breaks {len(bad)} rule(s), first: {bad[0]}")
        fp, enc = float_model_and_encodings(model)
        stem = path.name.removesuffix(".onnx")
        fpath, epath = path.with_name(f"{stem}.float.onnx"), path.with_name(f"{stem}.encodings")
        onnx.checker.check_model(fp)
        onnx.save(fp, str(fpath))
        write_text_atomic(epath, json.dumps(enc, indent=1))
        bits = sorted({e[0]["bitwidth"] for e in enc["activation_encodings"].values()})
        wbits = sorted({e[0]["bitwidth"] for e in enc["param_encodings"].values()})
        preset = "/".join(f"{a}a{w}w" for a in bits for w in wbits)
        return ({"float_onnx": fpath, "encodings": epath},
                {"rules": {"checker": "qnn-htp", "violations": 0}, "qnn_preset": preset,
                 "encodings": {"activations": len(enc["activation_encodings"]), "params": len(enc["param_encodings"])}})


TARGETS.register("qnn-htp", QnnHtp())
