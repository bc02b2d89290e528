"""The simulation as evaluation runs it (fused_for_simulation) computes bit for bit what the
converted q/dq graph computes, for each placement, in fewer passes (timed by benchmarks/main_job.py)."""
from __future__ import annotations

import pytest
import torch

from edgekit.data.calibration import CalibrationSource
from edgekit.quant.algorithms.ptq import PTQConfig, calibrate
from edgekit.quant.simulate import fused_for_simulation, quantize_with_recipe
from edgekit.registry import TARGETS


@pytest.mark.parametrize("target", ["executorch-xnnpack", "litert", "simulation"])
@pytest.mark.parametrize("w_bits,a_bits", [(8, 8), (4, 4)])
def test_fused_simulation_is_bitwise_the_converted_graph(tiny_canonical, target, w_bits, a_bits):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 28, 28, generator=g).clamp(-0.8, 2.0)
    recipe = calibrate(tiny_canonical, PTQConfig(w_bits=w_bits, a_bits=a_bits, act_estimator="minmax"),
                       CalibrationSource(x[:32], {"kind": "real"}), "ptq", progress=False)
    t = TARGETS.get(target)
    ref = quantize_with_recipe(tiny_canonical, recipe, t.quantizer(recipe))
    fused = fused_for_simulation(quantize_with_recipe(tiny_canonical, recipe, t.quantizer(recipe)))
    names = [str(n.target) for n in fused.graph.nodes if n.op == "call_function"]
    assert not any("quantize_per_tensor" in n or "quantize_per_channel" in n for n in names), names
    with torch.no_grad():
        assert torch.equal(ref(x), fused(x))
