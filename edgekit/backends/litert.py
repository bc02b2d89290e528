"""LiteRT: PT2E with litert-torch's PT2EQuantizer, converted by litert_torch to a fully integer
.tflite, run by the LiteRT interpreter (ai-edge-litert; tflite-runtime on devices)."""
from __future__ import annotations

from pathlib import Path


from edgekit.backends.base import Artifact, Target
from edgekit.models.canonical import CanonicalModel
from edgekit.quant.recipe import QuantRecipe
from edgekit.quant.simulate import float_ops, quantize_with_recipe
from edgekit.registry import TARGETS


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


TARGETS.register("litert", LiteRT())
