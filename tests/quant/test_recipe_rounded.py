"""Rounded integer weights in the recipe: saved beside recipe.json, written into the weights the
targets quantize, so that every target gets exactly those integers."""
from __future__ import annotations

import pytest
import torch

from edgekit.models.canonical import get_attr_tensor
from edgekit.quant.algorithms.ptq import PTQConfig, calibrate
from edgekit.data.calibration import CalibrationSource
from edgekit.quant.recipe import QuantRecipe, rounded_path
from edgekit.quant.simulate import with_rounded_weights


def _recipe_with_ints(canonical):
    src = CalibrationSource(torch.randn(8, 1, 28, 28), {"kind": "synthetic", "method": "test", "num_samples": 8})
    r = calibrate(canonical, PTQConfig(w_bits=4, a_bits=8), src, "test", progress=False)
    g = torch.Generator().manual_seed(0)
    gm = canonical.graph_module
    nodes = {n.name: n for n in gm.graph.nodes}
    for name, lq in r.layers.items():
        w = get_attr_tensor(gm, nodes[name].args[1])
        r.rounded_weights[name] = torch.randint(lq.weight.quant_min, lq.weight.quant_max + 1, w.shape,
                                                generator=g, dtype=torch.int8)
    return r


def test_save_load_roundtrip(tiny_canonical, tmp_path):
    r = _recipe_with_ints(tiny_canonical)
    r.save(tmp_path / "recipe.json")
    assert rounded_path(tmp_path / "recipe.json").name == "recipe.weights.npz"
    back = QuantRecipe.load(tmp_path / "recipe.json")
    assert set(back.rounded_weights) == set(r.rounded_weights)
    for k, v in r.rounded_weights.items():
        assert back.rounded_weights[k].dtype == torch.int8 and torch.equal(back.rounded_weights[k], v)
    assert back.layers == r.layers
    rounded_path(tmp_path / "recipe.json").unlink()
    with pytest.raises(ValueError, match="missing"):
        QuantRecipe.load(tmp_path / "recipe.json")


def test_recipe_without_ints_writes_no_npz(tiny_canonical, tmp_path):
    r = _recipe_with_ints(tiny_canonical)
    r.rounded_weights = {}
    r.save(tmp_path / "recipe.json")
    assert not rounded_path(tmp_path / "recipe.json").exists()
    assert QuantRecipe.load(tmp_path / "recipe.json").rounded_weights == {}


def test_weights_become_int_times_scale(tiny_canonical):
    r = _recipe_with_ints(tiny_canonical)
    original = {n: get_attr_tensor(tiny_canonical.graph_module, nd.args[1]).clone()
                for n, nd in ((nd.name, nd) for nd in tiny_canonical.graph_module.graph.nodes) if n in r.layers}
    gm = with_rounded_weights(tiny_canonical.graph_module, r)
    nodes = {n.name: n for n in gm.graph.nodes}
    for name, q in r.rounded_weights.items():
        w = get_attr_tensor(gm, nodes[name].args[1])
        s = r.layers[name].weight.scale_tensor().view(-1, *([1] * (w.dim() - 1)))
        assert torch.equal(torch.round(w / s).to(torch.int8), q)
    fresh = tiny_canonical.graph_module  # the canonical program itself is untouched
    for name, w0 in original.items():
        assert torch.equal(get_attr_tensor(fresh, {n.name: n for n in fresh.graph.nodes}[name].args[1]), w0)
