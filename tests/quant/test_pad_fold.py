"""Zero pads before a conv (TensorFlow "same" padding as converted models write it) run inside
the int8 convolution of the XNNPACK .pte, not in fp32 between a dequantize and a quantize
(``edgekit.quant.placement.PadsIntoConvs``); the onnx-qdq target keeps its own placement."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import edgekit.plugins  # noqa: F401  (registers placements and targets)
from edgekit import api
from edgekit.data.calibration import CalibrationSource
from edgekit.models.canonical import canonicalize
from edgekit.quant.algorithms.ptq import PTQConfig, ptq
from edgekit.quant.placement import PAD_OPS, quantizer_for
from edgekit.quant.simulate import quantize_with_recipe


class SamePadded(nn.Module):
    """Convs with explicit zero pads, as a Keras or ONNX port writes "same" padding."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, 2)
        self.c2 = nn.Conv2d(8, 8, 3, 1, groups=8)
        self.c3 = nn.Conv2d(8, 16, 3, 2)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = F.relu(self.c1(F.pad(x, (0, 1, 0, 1))))
        x = F.relu(self.c2(F.pad(x, (1, 1, 1, 1))))
        x = F.relu(self.c3(F.pad(x, (0, 1, 0, 1))))
        return self.fc(x.mean((2, 3)))


def _pads(gm):
    return [n for n in gm.graph.nodes if n.op == "call_function" and n.target in PAD_OPS]


def test_pads_are_quantized_at_their_input_and_run_in_int8_in_the_pte(tmp_path):
    """In the xnnpack placement each pad reads a dequantize and feeds its conv directly (no
    q/dq between them); the qdq placement keeps XNNPACKQuantizer's q/dq after the pad. The .pte
    has no fp32 pad left (its XNNPACK events name every pad X8 or fold it into the conv) and
    matches its simulation."""
    torch.manual_seed(0)
    model = SamePadded().eval()
    x = torch.rand(1, 3, 32, 32)
    canonical = canonicalize(model, x, "same_padded")
    recipe = ptq(canonical, PTQConfig(act_estimator="minmax"), CalibrationSource(torch.rand(16, 3, 32, 32)))
    sim = quantize_with_recipe(canonical, recipe, quantizer_for("xnnpack", recipe))
    pads = _pads(sim)
    assert len(pads) == 3
    for p in pads:
        assert "dequantize" in str(p.args[0].target)
        (user,) = p.users
        assert user.target is torch.ops.aten.conv2d.default
    qdq = quantize_with_recipe(canonical, recipe, quantizer_for("qdq", recipe))
    assert all("quantize" in str(next(iter(p.users)).target) for p in _pads(qdq))

    art = api.export(model, recipe, "executorch-xnnpack", tmp_path / "m.pte", example_input=x)
    assert not {o["op"] for o in art.ops["float_ops"]} & {"pad", "constant_pad_nd"}
    trace = api.profile(art, runs=3, warmup_runs=1)
    names = [e.name for e in trace.events]
    assert names and not [n for n in names if "Pad" in n and "X32" in n], names
    res = api.evaluate(art, torch.rand(8, 3, 32, 32), model=model, example_input=x, recipe=recipe)
    assert res["sqnr_db_vs_simulation"] >= 30, res
