"""XNNPACK's runtime operator labels ("Convolution (NHWC, QC8) IGEMM #2") -> op kinds, shared by
the runtimes that run XNNPACK (ExecuTorch's delegate, LiteRT's delegate) to align the operators
they log with the graph's nodes."""
from __future__ import annotations

import re

# runtime operator name prefix -> kind
_EVENT_KIND = {
    "convolution": "conv", "deconvolution": "deconv", "fully connected": "fc",
    "batch matrix multiply": "bmm", "mean": "reduce", "sum": "reduce",
    "global average pooling": "reduce", "average pooling": "avgpool", "max pooling": "maxpool",
    "argmax pooling": "maxpool", "add": "add", "multiply": "mul", "subtract": "sub",
    "divide": "div", "clamp": "clamp", "convert": "convert", "transpose": "transpose",
    "static reshape": "reshape", "reshape": "reshape", "copy": "reshape",
    "concatenate": "concat", "sigmoid": "sigmoid", "hardswish": "hardswish", "softmax": "softmax",
    "constant pad": "pad", "leaky relu": "leakyrelu", "elu": "elu", "tanh": "tanh",
    "slice": "slice", "resize bilinear": "resize", "square root": "sqrt", "negate": "neg",
    "abs": "abs", "floor": "floor", "ceiling": "ceil", "maximum": "max", "minimum": "min",
    "square": "square", "prelu": "prelu", "exp": "exp", "log": "log", "gelu": "gelu",
}


def event_kind(name: str) -> str:
    """Kind of an XNNPACK runtime operator from its label (text before the first '(' or '#')."""
    base = re.split(r"[(#]", name, maxsplit=1)[0].strip().lower()
    return _EVENT_KIND.get(base, re.sub(r"[^a-z0-9]", "", base))


