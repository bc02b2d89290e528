"""The ``simulation`` target: the recipe's PyTorch fake-quant program saved as a .pt2 and run by
torch. It accepts every bit width 2-8 and is what the bundle evaluates when no deployable target
can run a recipe; its results carry ``"runtime": "simulation"``, never a deployed runtime's name.
Quantize ops sit where its profile's placement policy (``full-integer``: XNNPACK's patterns plus
the attention matmuls, softmax, LayerNorm, GELU and SiLU outputs, as a fully integer runtime would
run a vision transformer) puts them, as Genie-M reconstructs them."""
from __future__ import annotations

from pathlib import Path

import torch

from edgekit.backends.base import Artifact, Target
from edgekit.models.canonical import CanonicalModel
from edgekit.quant.recipe import QuantRecipe
from edgekit.quant.simulate import float_ops, integer_ops, quantize_with_recipe
from edgekit.registry import TARGETS


class Simulation(Target):
    name = "simulation"
    batch_size = 256  # the .pt2 has a dynamic batch dimension where the model allows one

    def lower(self, canonical: CanonicalModel, recipe: QuantRecipe | None, out_dir: Path, stem: str = "model") -> Artifact:
        """Write ``stem``.pt2: the fake-quant program (float program when ``recipe`` is None),
        float32 [N, C, H, W] -> the model's float32 outputs [N, ...], with a dynamic batch where the model allows it."""
        module = canonical.graph_module if recipe is None else quantize_with_recipe(canonical, recipe, self.quantizer(recipe))
        ops = {} if recipe is None else {"float_ops": float_ops(module), "integer_ops": integer_ops(module)}
        x = canonical.example_input
        try:
            ep = torch.export.export(module, (x.expand(2, *x.shape[1:]).contiguous(),),
                                     dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1 << 16)},))
        except Exception:
            ep = torch.export.export(module, (x,))
        path = out_dir / f"{stem}.pt2"
        torch.export.save(ep, str(path))
        return Artifact(path, self.name, "pt2", "simulation", ops=ops)

    def runner(self, path: Path):
        module = torch.export.load(str(path)).module()

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return module(x)
        return run


TARGETS.register("simulation", Simulation())
