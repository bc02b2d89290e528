"""ONNX with QuantizeLinear/DequantizeLinear (QDQ) pairs: the format TensorRT (Jetson) and
Qualcomm QNN take, checked here with onnxruntime. (TensorRT runs INT4 weights on MatMul/Gemm
only and wants zero-point-0 activations; onnxruntime and QNN run the INT4 conv weights.)

The recipe's fake-quant program (quantize ops placed as XNNPACK places them, weights folded to
integers) is exported by the dynamo ``torch.onnx.export`` at opset 21, which writes every
quantize/dequantize op as a QDQ node named after the graph node. PT2E expresses a 4-bit tensor
as int8 with ``quant_min=-8, quant_max=7``, which ONNX cannot say, so a pass then gives each such
QDQ node an INT4 zero point (the type of its integers) and stores 4-bit weights as packed INT4
initializers (two per byte, ONNX 1.16+/opset 21): the file really holds 4-bit weights.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch

from edgekit.backends.base import Artifact, Target, captured_output
from edgekit.models.canonical import CanonicalModel
from edgekit.quant.recipe import QuantRecipe
from edgekit.quant.simulate import float_ops, integer_ops, quantize_with_recipe
from edgekit.registry import TARGETS

OPSET = 21  # INT4 QuantizeLinear/DequantizeLinear
_QDQ_OPS = ("quantize_per_tensor", "dequantize_per_tensor", "quantize_per_channel",
            "dequantize_per_channel")


def int4_qdq_nodes(ep: torch.export.ExportedProgram) -> set[str]:
    """Names of the quantize/dequantize nodes of ``ep`` whose integer range fits 4 bits
    (``quant_min >= -8`` and ``quant_max <= 7``): the values that become INT4 in ONNX."""
    out = set()
    for n in ep.graph.nodes:
        if n.op != "call_function" or not any(k in str(n.target) for k in _QDQ_OPS):
            continue
        qmin, qmax = n.args[-3], n.args[-2]  # (..., quant_min, quant_max, dtype)
        if isinstance(qmin, int) and isinstance(qmax, int) and qmin >= -8 and qmax <= 7:
            out.add(n.name)
    return out


def int4_tensor(name: str, values: np.ndarray):
    """An INT4 TensorProto holding ``values`` (integers in [-8, 7], any shape) packed two per
    byte in raw_data, the first element in the low nibble (the ONNX spec's order)."""
    from onnx import TensorProto, helper

    flat = values.astype(np.int8).reshape(-1)
    if flat.size % 2:
        flat = np.concatenate([flat, np.zeros(1, np.int8)])
    nib = (flat.view(np.uint8) & 0x0F)
    packed = (nib[0::2] | (nib[1::2] << 4)).astype(np.uint8)
    return helper.make_tensor(name, TensorProto.INT4, values.shape, packed.tobytes(), raw=True)


def to_int4(model, names: set[str]) -> int:
    """Make the QDQ nodes of the ONNX ``model`` whose output is in ``names`` 4-bit: a private INT4
    zero point each, and their integer weight initializers re-stored as packed INT4.

    Returns the number of nodes changed. Raises ValueError when a weight does not fit in int4."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    consumers: dict[str, int] = {}
    for node in model.graph.node:
        for i in node.input:
            consumers[i] = consumers.get(i, 0) + 1
    changed, int4_outputs = 0, set()
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or node.output[0] not in names:
            continue
        zp_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
        zp = numpy_helper.to_array(inits[zp_name]) if zp_name else np.zeros((), np.int8)
        new_zp = f"{node.output[0]}_zero_point_int4"
        model.graph.initializer.append(int4_tensor(new_zp, zp))
        if len(node.input) > 2:
            node.input[2] = new_zp
        else:
            node.input.append(new_zp)
        x = node.input[0]
        if node.op_type == "DequantizeLinear" and x in inits:
            w = numpy_helper.to_array(inits[x])
            if w.min() < -8 or w.max() > 7:
                raise ValueError(f"weight {x} of {node.output[0]} does not fit in int4")
            q4 = int4_tensor(f"{x}_int4" if consumers.get(x, 0) > 1 else x, w)
            if consumers.get(x, 0) > 1:
                model.graph.initializer.append(q4)
                node.input[0] = q4.name
            else:
                inits[x].CopyFrom(q4)
        changed += 1
        int4_outputs.add(node.output[0])
    drop_value_info(model, int4_outputs)  # the exporter's annotations still say int8 for these values
    drop_unused_initializers(model)
    return changed


def drop_value_info(model, names: set[str]) -> None:
    """Remove the shape/type annotations of the values ``names`` (their type was changed)."""
    kept = [v for v in model.graph.value_info if v.name not in names]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)


def drop_unused_initializers(model) -> None:
    """Remove the initializers no node reads."""
    used = {i for n in model.graph.node for i in n.input}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


_KEEP_META = ("pkg.torch.onnx.name_scopes", "pkg.torch.onnx.class_hierarchy")


def strip_node_metadata(model) -> None:
    """Drop the exporter's per-node stack traces and FX text (build-machine paths, most of the
    file's size); keep the module scopes the profiler maps operators with."""
    for node in model.graph.node:
        kept = [p for p in node.metadata_props if p.key in _KEEP_META]
        del node.metadata_props[:]
        node.metadata_props.extend(kept)


class OnnxQdq(Target):
    """ONNX QDQ (opset 21) checked in onnxruntime; the TensorRT and QNN targets build on it
    (their own placement, then :meth:`finish` on the ONNX before it is saved)."""

    name = "onnx-qdq"
    default_stem = "model"

    # quantize/dequantize placed as XNNPACK places them: around conv(+relu), add(+relu), linear,
    # the pattern onnxruntime's QDQ fusions take

    def lower(self, canonical: CanonicalModel, recipe: QuantRecipe | None, out_dir: Path, stem: str | None = None) -> Artifact:
        """Write ``stem``.onnx (opset 21, float32 input [1, C, H, W] -> float32 outputs [1, ...]);
        with a recipe, QDQ nodes carry its scales and zero points and 4-bit tensors are INT4, and
        the artifact's ``ops`` lists the float and integer ops (op, module) and the ONNX op counts.
        The converter's output goes to ``stem``.onnx.log. Raises RuntimeError when export fails
        or (TensorRT, QNN) the file breaks the vendor's rules."""
        import onnx

        stem = stem or self.default_stem
        module = canonical.graph_module if recipe is None else \
            quantize_with_recipe(canonical, recipe, self.quantizer(recipe), fold_quantize=True)
        ep = torch.export.export(module, (canonical.example_input,))
        path, log = out_dir / f"{stem}.onnx", out_dir / f"{stem}.onnx.log"
        with captured_output(log):
            program = torch.onnx.export(ep, dynamo=True, opset_version=OPSET, verbose=False)
        model = program.model_proto
        n4 = to_int4(model, int4_qdq_nodes(ep)) if recipe is not None else 0
        strip_node_metadata(model)
        side, extra = self.finish(model, recipe, path) if recipe is not None else ({}, {})
        onnx.checker.check_model(model)
        onnx.save(model, str(path))  # into the staged bundle directory, like the other targets
        with open(log, "a") as f:
            f.write(f"edgekit: {n4} quantize/dequantize nodes stored as INT4\n")
        ops = {"float_ops": float_ops(module), "integer_ops": integer_ops(module),
               "onnx_ops": dict(sorted(Counter(n.op_type for n in model.graph.node).items())), **extra} if recipe else {}
        return Artifact(path, self.name, "onnx", self.profile.runtime, {"log": log, **side}, ops=ops)

    def finish(self, model, recipe: QuantRecipe, path: Path) -> tuple[dict[str, Path], dict]:
        """Change the quantized ONNX ``model`` in place before it is saved to ``path``; returns
        (side files written beside it, entries for the artifact's ``ops``). Here: nothing."""
        return {}, {}


TARGETS.register("onnx-qdq", OnnxQdq())
