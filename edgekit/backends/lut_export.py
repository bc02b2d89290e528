"""LUT networks as deployable graphs: the table network (``edgekit.quant.lut_tables.TableNet``,
int8 tables as constants, 4-simplex interpolation as comparisons, sums and one gather per unit
and rotation) exported at a static input size, written as

- ``.pte``: ExecuTorch, portable kernels (no delegate: XNNPACK has no gather), with its ETRecord;
- ``.tflite``: LiteRT via litert_torch (GATHER on the int8 tables, then float arithmetic).

Input float32 [1, 1, h, w] (Y / 255, rounded to 8 bits inside), output float32 [1, 1, r*h, r*w]
in [0, 1] (8-bit values / 255). Every value in the graph is an integer or a multiple of 1/16 well
inside float32's exact range, so both artifacts are meant to reproduce the numpy reference
(``edgekit.kernels.lut_net``) bit for bit; the bundle measures it.
"""
from __future__ import annotations

from pathlib import Path

import torch


def export_program(net: torch.nn.Module, h: int, w: int) -> torch.export.ExportedProgram:
    """torch.export of ``net`` (a deployment TableNet) at input [1, 1, h, w]."""
    net.eval()
    return torch.export.export(net, (torch.zeros(1, 1, h, w),))


def write_pte(net: torch.nn.Module, h: int, w: int, out: Path) -> dict:
    """Write ``out`` (.pte) and ``out``.etrecord beside it; returns the op counts by name of the
    edge program ({"ops": {name: count}, "delegated": 0})."""
    from executorch.exir import to_edge_transform_and_lower

    edge = to_edge_transform_and_lower(export_program(net, h, w), generate_etrecord=True)
    counts: dict[str, int] = {}
    for n in edge.exported_program().graph_module.graph.nodes:
        if n.op == "call_function":
            name = str(getattr(n.target, "__name__", n.target)).replace(".default", "")
            counts[name] = counts.get(name, 0) + 1
    program = edge.to_executorch()
    out.write_bytes(program.buffer)
    program.get_etrecord().save(str(out.with_suffix(".etrecord")))
    return {"ops": dict(sorted(counts.items())), "delegated": 0}


def write_tflite(net: torch.nn.Module, h: int, w: int, out: Path) -> dict:
    """Write ``out`` (.tflite); returns its op counts by builtin name ({"ops": {name: count}})."""
    import litert_torch

    from edgekit.backends.litert import tflite_ops_by_dtype

    net.eval()
    litert_torch.convert(net, (torch.zeros(1, 1, h, w),)).export(str(out))
    return {"ops": tflite_ops_by_dtype(out)}
