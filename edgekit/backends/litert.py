"""LiteRT: PT2E with litert-torch's PT2EQuantizer, converted by litert_torch to a fully integer
.tflite, run by the LiteRT interpreter (ai-edge-litert; tflite-runtime on devices)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from edgekit.backends.base import Artifact, Target, captured_output
from edgekit.models.canonical import CanonicalModel
from edgekit.quant.recipe import QuantRecipe
from edgekit.quant.simulate import float_ops, quantize_with_recipe
from edgekit.registry import TARGETS


def make_interpreter(path: Path, num_threads: int | None = None):
    """A LiteRT interpreter for ``path`` from ai-edge-litert, or tflite-runtime where that is installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from tflite_runtime.interpreter import Interpreter  # the same interpreter, older name
    with captured_output(Path(os.devnull)):  # the interpreter's delegate notice
        interp = Interpreter(model_path=str(path), num_threads=num_threads)
        interp.allocate_tensors()
    return interp


class LiteRT(Target):
    name = "litert"

    def lower(self, canonical: CanonicalModel, recipe: QuantRecipe | None, out_dir: Path, stem: str = "model") -> Artifact:
        """Write ``stem``.tflite (fully integer when ``recipe`` is given)."""
        import litert_torch
        from litert_torch.quantize.quant_config import QuantConfig

        if recipe is None:
            model = litert_torch.convert(canonical.graph_module, (canonical.example_input,))
        else:
            q = self.quantizer(recipe)
            module = quantize_with_recipe(canonical, recipe, q, fold_quantize=False)
            model = litert_torch.convert(module, (canonical.example_input,), quant_config=QuantConfig(pt2e_quantizer=q))
        path = out_dir / f"{stem}.tflite"
        model.export(str(path))
        return Artifact(path, self.name, "tflite", "litert", ops={"float_ops": float_ops(module)} if recipe else {})

    def runner(self, path: Path):
        interp = make_interpreter(path)
        inp, out = interp.get_input_details()[0], interp.get_output_details()[0]

        def run(x: torch.Tensor) -> torch.Tensor:
            a = x.numpy()
            if inp["dtype"] != np.float32:  # integer input: quantize with the model's own parameters
                s, z = inp["quantization"]
                a = np.clip(np.round(a / s) + z, -128, 127).astype(inp["dtype"])
            interp.set_tensor(inp["index"], a)
            interp.invoke()
            y = interp.get_tensor(out["index"])
            if out["dtype"] != np.float32:
                s, z = out["quantization"]
                y = (y.astype(np.float32) - z) * s
            return torch.from_numpy(np.array(y, dtype=np.float32))
        return run


TARGETS.register("litert", LiteRT())
