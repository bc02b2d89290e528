"""LiteRT: PT2E with litert-torch's PT2EQuantizer, converted by litert_torch to a fully integer
.tflite, run by the LiteRT interpreter (ai-edge-litert; tflite-runtime on devices)."""
from __future__ import annotations

from pathlib import Path


from edgekit.backends.base import Artifact, Target
from edgekit.models.canonical import CanonicalModel
from edgekit.quant.recipe import QuantRecipe
from edgekit.quant.simulate import float_ops, integer_ops, quantize_with_recipe
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
        ops = {"float_ops": float_ops(module), "integer_ops": integer_ops(module),
               "tflite_ops": tflite_ops_by_dtype(path)} if recipe else {}
        return Artifact(path, self.name, "tflite", "litert", ops=ops)


def tflite_ops_by_dtype(path: Path) -> dict[str, int]:
    """How many of each TFLite op the file holds, by its output's type: {"CONV_2D int8": 15,
    "SOFTMAX int8": 3, "LOGISTIC float32": 17, ...}, read by the LiteRT interpreter."""
    from collections import Counter

    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(path))
    dtypes = {t["index"]: t["dtype"].__name__ for t in it.get_tensor_details()}
    counts = Counter(f"{o['op_name']} {dtypes.get(o['outputs'][0], '?')}" for o in it._get_ops_details() if len(o["outputs"]))
    return dict(sorted(counts.items()))


TARGETS.register("litert", LiteRT())
