"""Placement policies: where a backend's kernels want quantize/dequantize, as a PT2E quantizer.

The recipe says how each tensor is quantized; a placement says which tensors are (its fusion
patterns: conv + ReLU output only, add inputs and output, ...). A target names its placement in
its TOML profile (``placement = "xnnpack"``); algorithms that need the quantized graph (Genie-M's
reconstruction) and the simulation receive the placement by name, so no algorithm names a backend.

Registered: ``xnnpack`` (ExecuTorch's XNNPACKQuantizer, symmetric int8 weights, affine int8
activations, with :class:`PadsIntoConvs`), ``qdq`` (the XNNPACKQuantizer as it is: the onnx-qdq
target's), ``litert`` (litert-torch's PT2EQuantizer,
TFLite's fused patterns, with :class:`IntegerNorms`: its converter fuses dequantize -> op ->
quantize into int8 BATCH_MATMUL and SOFTMAX, and LayerNorm and SiLU are decomposed into ops it
has int8 kernels for (MEAN, RSQRT, MUL, ADD, LOGISTIC), each with q/dq), and ``full-integer`` (the simulation's: the XNNPACK patterns plus the
transformer ops no CPU delegate runs in int8, see :class:`TransformerOps`), ``tensorrt``
(:class:`InputsOnly`: symmetric int8 on the inputs of conv, linear, pooling, attention matmuls and
both inputs of adds, as TensorRT fuses explicit quantization) and ``qnn`` (the XNNPACK patterns
plus the transformer ops, pads not folded: the HTP runs every tensor in integers).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torchao.quantization.pt2e.quantizer import Quantizer

from edgekit.quant.decompose import DECOMPOSED, decompose_norms
from edgekit.quant.recipe import FIXED_RANGE_OPS, QuantRecipe
from edgekit.registry import PLACEMENTS


@dataclass(frozen=True)
class Placement:
    """A named placement policy. make: (per_channel: bool) -> a PT2E Quantizer."""
    name: str
    description: str
    make: Callable


def quantizer_for(placement: str, recipe: QuantRecipe):
    """The PT2E quantizer of placement ``placement`` for ``recipe``'s weight granularity
    (per-channel when any layer is: a per-tensor layer then repeats its one scale on every
    channel, the same integers; ``edgekit.quant.observer``). Raises UserError for an unknown placement."""
    per_channel = any(lq.weight.granularity == "per_channel" for lq in recipe.layers.values())
    return PLACEMENTS.get(placement).make(per_channel)


def _xnnpack_quantizer(per_channel: bool):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)
    return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel))


class OnTopOf(Quantizer):
    """A PT2E quantizer that annotates after a ``base`` quantizer and otherwise is that base
    (its validation, its configuration: litert-torch reads ``global_config``)."""

    def __init__(self, base: Quantizer) -> None:
        super().__init__()
        self.base = base

    def validate(self, model: torch.fx.GraphModule) -> None:
        self.base.validate(model)

    def __getattr__(self, name: str):
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)


PAD_OPS = {torch.ops.aten.pad.default, torch.ops.aten.constant_pad_nd.default}


def _zero_spatial_pad(n: torch.fx.Node) -> bool:
    """A constant pad with value 0 of at most the two last dims, no cropping, read by one op."""
    if n.target is torch.ops.aten.pad.default:
        mode = n.kwargs.get("mode", n.args[2] if len(n.args) > 2 else "constant")
        value = n.kwargs.get("value", n.args[3] if len(n.args) > 3 else None)
    else:
        mode, value = "constant", n.kwargs.get("value", n.args[2] if len(n.args) > 2 else 0.0)
    pads = list(n.args[1])
    return mode == "constant" and not value and len(pads) <= 4 and min(pads, default=0) >= 0 and len(n.users) == 1


class PadsIntoConvs(OnTopOf):
    """A base PT2E quantizer, then each zero constant pad read only by a conv2d (TensorFlow's
    "same" padding, written as F.pad by converted models) quantized at its input instead of the
    conv's: dequantize -> pad -> conv, with no quantize/dequantize between pad and conv. That is
    the pattern ExecuTorch's XNNPACK partitioner folds into the int8 convolution; with the conv's
    input quantized (XNNPACKQuantizer's choice) the pad runs in fp32 between a dequantize and a
    quantize (on an MLPerf Tiny MobileNet, 27 such pads took about half the int8 .pte's time).
    A zero pad of int8 values is the zero point, so the integers are the same."""

    def transform_for_annotation(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        return self.base.transform_for_annotation(model)

    def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        from torchao.quantization.pt2e.quantizer import QuantizationAnnotation
        self.base.annotate(model)
        for n in model.graph.nodes:
            pad = n.args[0] if n.op == "call_function" and n.target is torch.ops.aten.conv2d.default else None
            if not (isinstance(pad, torch.fx.Node) and pad.op == "call_function" and pad.target in PAD_OPS
                    and _zero_spatial_pad(pad) and pad.meta.get("quantization_annotation") is None):
                continue
            ann = n.meta.get("quantization_annotation")
            if ann is None or pad not in ann.input_qspec_map:
                continue
            spec = ann.input_qspec_map.pop(pad)
            pad.meta["quantization_annotation"] = QuantizationAnnotation({pad.args[0]: spec}, None, _annotated=True)
        return model


def _xnnpack(per_channel: bool):
    return PadsIntoConvs(_xnnpack_quantizer(per_channel))


def _litert(per_channel: bool):
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    return PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel))


# ops a fully integer runtime runs on int8 tensors that the CPU delegates' quantizers leave float
ATTENTION_MATMULS = {torch.ops.aten.matmul.default, torch.ops.aten.bmm.default}
OUTPUT_ONLY_OPS = FIXED_RANGE_OPS | {torch.ops.aten.layer_norm.default, torch.ops.aten.gelu.default,
                                    torch.ops.aten.silu.default}


class TransformerOps(OnTopOf):
    """A base PT2E quantizer, then the transformer ops it left unannotated: activation x
    activation matmuls (q@kᵀ, attn@v: both inputs and the output), and the outputs of softmax,
    sigmoid, LayerNorm, GELU and SiLU. Softmax and sigmoid outputs take the fixed range [0, 1)
    (``edgekit.quant.qparams.fill_unit_interval``). Which of these run in integers is recorded per op in
    each artifact's ``float_ops``."""

    def __init__(self, base: Quantizer) -> None:
        super().__init__(base)
        self.act = base.global_config.input_activation  # the base's own activation spec

    def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        from torchao.quantization.pt2e.quantizer import QuantizationAnnotation
        self.base.annotate(model)
        for n in model.graph.nodes:
            if n.op != "call_function" or n.meta.get("quantization_annotation") is not None:
                continue
            if n.target in ATTENTION_MATMULS:
                inputs = {a: self.act for a in n.args[:2] if isinstance(a, torch.fx.Node)}
            elif n.target in OUTPUT_ONLY_OPS:
                inputs = {}
            else:
                continue
            n.meta["quantization_annotation"] = QuantizationAnnotation(inputs, self.act, _annotated=True)
        return model


class IntegerNorms(TransformerOps):
    """:class:`TransformerOps` on a graph whose LayerNorm and SiLU are written as primitive ops
    (``edgekit.quant.decompose``: mean, sub, mul, add, rsqrt, sigmoid), each with int8 inputs and
    output, for a runtime with int8 kernels for those ops and none for LayerNorm or SiLU (TFLite).
    The inner tensors are not in a recipe planned on the model's own graph:
    ``edgekit.quant.complete.complete_recipe`` adds them."""

    def transform_for_annotation(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        return decompose_norms(self.base.transform_for_annotation(model))

    def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        from torchao.quantization.pt2e.quantizer import QuantizationAnnotation
        super().annotate(model)
        for n in model.graph.nodes:
            if n.op == "call_function" and DECOMPOSED in n.meta and n.target not in FIXED_RANGE_OPS:
                inputs = {a: self.act for a in n.args if isinstance(a, torch.fx.Node)}
                n.meta["quantization_annotation"] = QuantizationAnnotation(inputs, self.act, _annotated=True)
        return model


def _full_integer(per_channel: bool):
    return TransformerOps(_xnnpack(per_channel))


#: ops TensorRT runs in int8 when their inputs carry Q/DQ: (op, indices of the activation inputs);
#: conv and linear also take their weight (input 1) per-channel, their bias (input 2) in float
_TRT_INPUTS = {torch.ops.aten.conv2d.default: (0,), torch.ops.aten.linear.default: (0,),
               torch.ops.aten.matmul.default: (0, 1), torch.ops.aten.bmm.default: (0, 1),
               torch.ops.aten.add.Tensor: (0, 1), torch.ops.aten.add_.Tensor: (0, 1),
               torch.ops.aten.max_pool2d.default: (0,), torch.ops.aten.avg_pool2d.default: (0,),
               torch.ops.aten.adaptive_avg_pool2d.default: (0,)}


class InputsOnly(Quantizer):
    """TensorRT's explicit-quantization placement (NVIDIA's TensorRT developer guide, "Q/DQ
    layer placement"; its pytorch-quantization toolkit places them so): Q/DQ on the inputs of
    the ops TensorRT fuses with them (conv, linear, attention matmuls, pooling, and both inputs of
    a residual add), none on any op's output, so nothing is quantized on the network output and a
    bias stays float. Activations are symmetric int8 (zero point 0, [-128, 127]); weights
    symmetric int8 [-127, 127], per-channel on the output-channel axis 0 (``per_channel``) or
    per-tensor. TensorRT fuses a conv's output with the next op's input quantize."""

    def __init__(self, per_channel: bool) -> None:
        super().__init__()
        from torchao.quantization.pt2e.observer import MinMaxObserver, PerChannelMinMaxObserver
        from torchao.quantization.pt2e.quantizer import QuantizationSpec
        self.act = QuantizationSpec(torch.int8, MinMaxObserver, quant_min=-128, quant_max=127,
                                    qscheme=torch.per_tensor_symmetric)
        self.weight = QuantizationSpec(
            torch.int8, PerChannelMinMaxObserver if per_channel else MinMaxObserver, quant_min=-127, quant_max=127,
            qscheme=torch.per_channel_symmetric if per_channel else torch.per_tensor_symmetric,
            ch_axis=0 if per_channel else None)

    def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        from torchao.quantization.pt2e.quantizer import QuantizationAnnotation
        for n in model.graph.nodes:
            idx = _TRT_INPUTS.get(n.target) if n.op == "call_function" else None
            if idx is None or n.meta.get("quantization_annotation") is not None:
                continue
            inputs = {n.args[i]: self.act for i in idx if i < len(n.args) and _float_activation(n.args[i])}
            if n.target in WEIGHTED and isinstance(n.args[1], torch.fx.Node):
                inputs[n.args[1]] = self.weight
            if inputs:
                n.meta["quantization_annotation"] = QuantizationAnnotation(inputs, None, _annotated=True)
        return model

    def validate(self, model: torch.fx.GraphModule) -> None:
        pass


WEIGHTED = {torch.ops.aten.conv2d.default, torch.ops.aten.linear.default}


def _float_activation(a) -> bool:
    """A float tensor computed by the graph (not a constant: weights are annotated apart)."""
    val = a.meta.get("val") if isinstance(a, torch.fx.Node) else None
    return a is not None and isinstance(val, torch.Tensor) and val.is_floating_point() and a.op != "get_attr"


PLACEMENTS.register("tensorrt", Placement("tensorrt", "TensorRT explicit quantization: symmetric int8 Q/DQ on the "
                                          "inputs of conv, linear, matmul, pooling and residual adds; none on outputs",
                                          InputsOnly))
_aten = torch.ops.aten
#: ops Qualcomm's HTP runs on quantized tensors that the XNNPACK patterns leave float (QNN's HTP
#: op package; ExecuTorch's QnnQuantizer annotates them): their float inputs and output get q/dq
HTP_QUANTIZED_OPS = {_aten.hardswish.default, _aten.hardsigmoid.default, _aten.sigmoid.default, _aten.tanh.default,
                     _aten.mean.dim, _aten.pad.default, _aten.constant_pad_nd.default, _aten.mul.Tensor,
                     _aten.sub.Tensor, _aten.hardtanh.default, _aten.clamp.default, _aten.leaky_relu.default,
                     _aten.cat.default, _aten.max_pool2d.default, _aten.avg_pool2d.default,
                     _aten.upsample_nearest2d.vec, _aten.upsample_bilinear2d.vec, _aten.pixel_shuffle.default}


class HtpOps(TransformerOps):
    """:class:`TransformerOps` on the XNNPACK patterns (pads not folded), then every op of
    ``HTP_QUANTIZED_OPS`` still unannotated gets its float activation inputs and its output
    quantized: Qualcomm's HTP runs the whole network on quantized tensors, and a float op in a
    QDQ graph falls back to the CPU or fails to convert."""

    def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        from torchao.quantization.pt2e.quantizer import QuantizationAnnotation
        super().annotate(model)
        for n in model.graph.nodes:
            if n.op != "call_function" or n.target not in HTP_QUANTIZED_OPS or n.meta.get("quantization_annotation"):
                continue
            args = n.args[0] if n.target is _aten.cat.default else n.args
            inputs = {a: self.act for a in args if _float_activation(a)}
            n.meta["quantization_annotation"] = QuantizationAnnotation(inputs, self.act, _annotated=True)
        return model


PLACEMENTS.register("qnn", Placement("qnn", "XNNPACK patterns plus attention matmuls, softmax, LayerNorm, GELU, SiLU, "
                                     "hard-swish, sigmoid, mean, pad, mul, clamp, concat (Qualcomm HTP runs every "
                                     "tensor quantized)", lambda per_channel: HtpOps(_xnnpack_quantizer(per_channel))))
PLACEMENTS.register("xnnpack", Placement("xnnpack", "ExecuTorch XNNPACKQuantizer patterns, zero pads before a conv "
                                         "quantized at their input (folded into the int8 conv)", _xnnpack))
PLACEMENTS.register("qdq", Placement("qdq", "ExecuTorch XNNPACKQuantizer patterns as they are (ONNX QDQ: "
                                     "onnxruntime fuses DQ -> Conv, not DQ -> Pad -> Conv)", _xnnpack_quantizer))
PLACEMENTS.register("litert", Placement("litert", "litert-torch PT2EQuantizer (TFLite fused patterns) plus attention "
                                        "matmuls, softmax, and LayerNorm/SiLU decomposed into int8 MEAN, RSQRT, "
                                        "MUL, ADD, LOGISTIC",
                                        lambda per_channel: IntegerNorms(_litert(per_channel))))
PLACEMENTS.register("full-integer", Placement("full-integer", "XNNPACK patterns plus attention matmuls, softmax, "
                                              "LayerNorm, GELU and SiLU outputs", _full_integer))
