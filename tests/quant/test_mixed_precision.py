"""ZeroQ mixed precision: KL sensitivity, exact Pareto frontier, budget, bundle files."""
from __future__ import annotations

import itertools
import json

import pytest
import torch

from edgekit.data.calibration import CalibrationSource
from edgekit.errors import UserError
from edgekit.quant.mixed_precision import (LayerInfo, budget_bytes, choose_bits, layer_infos, pareto_frontier,
                                           rtn_weight, sensitivities, size_bytes, write_pareto)


def test_frontier_is_exact_on_a_small_problem():
    g = torch.Generator().manual_seed(0)
    layers = [LayerInfo(f"l{i}", f"l{i}", int(p)) for i, p in enumerate([40, 13, 100, 7, 55])]
    sens = {li.node: {8: float(torch.rand(1, generator=g)) * 0.01, 4: float(torch.rand(1, generator=g)),
                      2: 1 + float(torch.rand(1, generator=g)) * 5} for li in layers}
    front = pareto_frontier(layers, sens)
    brute = []
    for a in itertools.product((2, 4, 8), repeat=len(layers)):
        bits = {li.node: b for li, b in zip(layers, a)}
        brute.append((size_bytes(layers, bits), sum(sens[li.node][b] for li, b in zip(layers, a))))
    for size, k in brute:  # nothing beats the frontier
        best = min(f[1] for f in front if f[0] <= size)
        assert best <= k + 1e-12
    for size, k, a in front:  # every frontier point is real
        assert size == size_bytes(layers, dict(zip((li.node for li in layers), a)))
    sizes = [f[0] for f in front]
    assert sizes == sorted(sizes) and front[0][2] == (2,) * 5 and front[-1][2] == (8,) * 5


def test_budgets(tiny_canonical):
    layers = layer_infos(tiny_canonical.graph_module)
    total = sum(li.params for li in layers)
    assert [li.module for li in layers] == ["conv1", "conv2", "fc"]
    assert budget_bytes(layers, None, 4) == pytest.approx(total / 2)
    assert budget_bytes(layers, 0.5, None) == 500
    with pytest.raises(UserError, match="smaller than the model with every layer at 2 bits"):
        budget_bytes(layers, 0.01, None)
    with pytest.raises(UserError, match="exactly one budget"):
        budget_bytes(layers, None, None)
    with pytest.raises(UserError, match="outside"):
        budget_bytes(layers, None, 9)


def test_sensitivity_falls_with_bits(tiny_canonical):
    x = torch.randn(32, 1, 28, 28)
    s = sensitivities(tiny_canonical, x)
    assert set(s) == {"conv2d", "conv2d_1", "linear"}
    for v in s.values():
        assert v[2] > v[4] > v[8] >= 0
    w = torch.randn(5, 3)
    assert len(torch.unique(rtn_weight(w, 2)[0])) <= 3


def test_choice_within_budget_and_files(tiny_canonical, tmp_path):
    calib = CalibrationSource(torch.randn(32, 1, 28, 28), {"kind": "synthetic"})
    r = choose_bits(tiny_canonical, calib, avg_bits=4)
    assert r.chosen_bytes <= r.budget_bytes
    assert r.chosen_sensitivity <= r.uniform[4]["sensitivity"] + 1e-12  # uniform W4 has the same size
    assert set(r.chosen.values()) <= {2, 4, 8}
    write_pareto(r, tmp_path)
    d = json.loads((tmp_path / "pareto.json").read_text())
    assert d["chosen"] == r.chosen and d["frontier"] and set(d["chosen_by_module"]) == {"conv1", "conv2", "fc"}
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"
