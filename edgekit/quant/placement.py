"""Placement policies: where a backend's kernels want quantize/dequantize, as a PT2E quantizer.

The recipe says how each tensor is quantized; a placement says which tensors are (its fusion
patterns: conv + ReLU output only, add inputs and output, ...). A target names its placement in
its TOML profile (``placement = "xnnpack"``); algorithms that need the quantized graph (Genie-M's
reconstruction) and the simulation receive the placement by name, so no algorithm names a backend.

Registered: ``xnnpack`` (ExecuTorch's XNNPACKQuantizer, symmetric int8 weights, affine int8
activations; also what the onnx-qdq target and the simulation use) and ``litert`` (litert-torch's
PT2EQuantizer, TFLite's fused patterns).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from edgekit.quant.recipe import QuantRecipe
from edgekit.registry import PLACEMENTS


@dataclass(frozen=True)
class Placement:
    """A named placement policy. make: (per_channel: bool) -> a PT2E Quantizer."""
    name: str
    description: str
    make: Callable


def quantizer_for(placement: str, recipe: QuantRecipe):
    """The PT2E quantizer of placement ``placement`` for ``recipe``'s weight granularity
    (per-channel when every layer is). Raises UserError for an unknown placement."""
    per_channel = all(lq.weight.granularity == "per_channel" for lq in recipe.layers.values())
    return PLACEMENTS.get(placement).make(per_channel)


def _xnnpack(per_channel: bool):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)
    return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel))


def _litert(per_channel: bool):
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    return PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel))


PLACEMENTS.register("xnnpack", Placement("xnnpack", "ExecuTorch XNNPACKQuantizer patterns", _xnnpack))
PLACEMENTS.register("litert", Placement("litert", "litert-torch PT2EQuantizer (TFLite fused patterns)", _litert))
