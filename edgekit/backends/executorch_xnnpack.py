"""ExecuTorch + XNNPACK: PT2E with XNNPACKQuantizer, every op delegated by XnnpackPartitioner,
serialized to .pte with its ETRecord (the debug map from runtime ops to the model's modules)."""
from __future__ import annotations

from pathlib import Path

import torch

from edgekit.backends.base import Artifact, Target
from edgekit.models.canonical import CanonicalModel, module_path
from edgekit.quant.recipe import QuantRecipe
from edgekit.quant.simulate import QDQ_OP_NAMES, float_ops, integer_ops, quantize_with_recipe
from edgekit.registry import TARGETS

# Edge-dialect ops left outside the delegate that are bookkeeping, not compute.
_HOST_OPS = ("executorch_call_delegate", "getitem")


class ExecuTorchXnnpack(Target):
    name = "executorch-xnnpack"

    def lower(self, canonical: CanonicalModel, recipe: QuantRecipe | None, out_dir: Path, stem: str = "model") -> Artifact:
        """Write ``stem``.pte and ``stem``.etrecord. Ops XNNPACK does not take stay outside the
        delegate (ExecuTorch's portable kernels) and are listed in ``Artifact.ops``."""
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        if recipe is None:
            module = canonical.graph_module
        else:
            module = quantize_with_recipe(canonical, recipe, self.quantizer(recipe), fold_quantize=True)
        ep = torch.export.export(module, (canonical.example_input,))
        edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()], generate_etrecord=True)
        ops = delegation_report(edge.exported_program().graph_module)
        if recipe is not None:
            ops["float_ops"], ops["integer_ops"] = float_ops(module), integer_ops(module)
        program = edge.to_executorch()
        pte, etrecord = out_dir / f"{stem}.pte", out_dir / f"{stem}.etrecord"
        pte.write_bytes(program.buffer)
        program.get_etrecord().save(str(etrecord))
        return Artifact(pte, self.name, "pte", "executorch", {"etrecord": etrecord}, ops)


def _compute_nodes(gm):
    return [n for n in gm.graph.nodes if n.op == "call_function"
            and not any(h in str(n.target) for h in _HOST_OPS + QDQ_OP_NAMES)]


def delegation_report(gm) -> dict:
    """Counts of compute ops (quantize/dequantize not counted) inside XNNPACK delegates and
    outside them, and the ones outside as [{op, module}], of an edge program's GraphModule."""
    inside = 0
    for _, child in gm.named_children():
        orig = getattr(child, "original_module", None)
        if orig is not None:
            inside += len(_compute_nodes(orig.graph_module))
    left = _compute_nodes(gm)
    return {"ops_total": inside + len(left), "ops_delegated": inside,
            "not_delegated": [{"op": _op_name(n.target), "module": module_path(n)} for n in left]}


def _op_name(target) -> str:
    name = getattr(target, "__name__", None) or str(target)
    return name.split(":")[0].replace("<EdgeOpOverload: ", "").strip(">")


TARGETS.register("executorch-xnnpack", ExecuTorchXnnpack())
