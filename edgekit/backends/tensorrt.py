"""The ``tensorrt`` target (Jetson and other NVIDIA GPUs): an explicit-quantization ONNX.

Symmetric int8 activations (zero point 0) and symmetric per-channel int8 weights, with Q/DQ on
the inputs of the ops TensorRT fuses them into (``edgekit.quant.placement.InputsOnly``), bias and
network outputs in float. Every artifact passes the TensorRT rules checker
(``edgekit.backends.onnx_rules.tensorrt_violations``) before it is written, and is evaluated
here in onnxruntime with Q/DQ computed as the ONNX spec says (what TensorRT is given). On the
device ``trtexec`` builds a strongly typed engine from it and profiles it
(``edgekit.runtimes.tensorrt``).
"""
from __future__ import annotations

from pathlib import Path

from edgekit.backends.onnx_qdq import OnnxQdq
from edgekit.backends.onnx_rules import load_onnx, tensorrt_violations
from edgekit.quant.recipe import QuantRecipe
from edgekit.registry import TARGETS


class TensorRT(OnnxQdq):
    name = "tensorrt"
    default_stem = "model_tensorrt"

    def rules(self, path: Path) -> list:
        """TensorRT's explicit-quantization rules broken by the ONNX at ``path`` (any ONNX)."""
        return tensorrt_violations(load_onnx(path))

    def finish(self, model, recipe: QuantRecipe, path: Path) -> tuple[dict[str, Path], dict]:
        """Refuse (RuntimeError, naming the node and the rule) an ONNX that breaks TensorRT's
        rules or its placement advice: that is a bug in edgekit's placement, not the user's."""
        bad = tensorrt_violations(model)
        if bad:
            raise RuntimeError(f"the TensorRT ONNX breaks {len(bad)} rule(s), first: {bad[0]}")
        return {}, {"rules": {"checker": "tensorrt", "violations": 0}}


TARGETS.register("tensorrt", TensorRT())
