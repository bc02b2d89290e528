import pytest
import torch

from edgekit.config import SynthConfig
from edgekit.errors import UserError
from edgekit.models.canonical import canonicalize
from edgekit.quant.observer import load_recipe_into
from edgekit.quant.recipe import QuantRecipe, plan_recipe
from tests.fixtures.models import no_bn, tiny_bn


@pytest.fixture(scope="module")
def canonical():
    return canonicalize(tiny_bn(), torch.zeros(1, 1, 28, 28), "tiny")


def test_bn_is_folded_and_outputs_match(canonical):
    model = tiny_bn()
    x = torch.randn(5, 1, 28, 28)  # batch 5: the canonical graph is batch-polymorphic
    ops = {str(n.target) for n in canonical.folded.graph.nodes}
    assert not any("batch_norm" in o for o in ops)
    assert canonical.num_bn == 2 and len(canonical.bn_stats) == 2
    assert torch.allclose(canonical.graph_module(x), model(x), atol=1e-5)


def test_node_names_survive_save_and_load(canonical, tmp_path):
    torch.export.save(canonical.folded, str(tmp_path / "m.pt2"))
    loaded = torch.export.load(str(tmp_path / "m.pt2")).module()
    assert [n.name for n in loaded.graph.nodes] == [n.name for n in canonical.graph_module.graph.nodes]


def test_recipe_plan_round_trip(canonical):
    r = plan_recipe(canonical.graph_module, "ptq", 8, 8)
    assert {lq.module for lq in r.layers.values()} == {"conv1", "conv2", "fc"}
    assert not r.filled
    assert QuantRecipe.from_dict(r.to_dict()) == r


def test_unfilled_recipe_is_refused_naming_the_tensor(canonical):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e
    prepared = prepare_pt2e(canonical.graph_module,
                            XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True)))
    with pytest.raises(ValueError, match="no quantization parameters for the"):
        load_recipe_into(prepared, plan_recipe(canonical.graph_module, "ptq", 8, 8))


def test_zeroq_distill_matches_bn_and_is_seeded(canonical):
    from edgekit.synth.bn_loss import BNStatLoss
    from edgekit.synth.zeroq import distill
    cfg = SynthConfig(num_samples=8, batch_size=8, iterations=30, seed=3)
    a = distill(canonical, cfg, progress=False)
    b = distill(canonical, cfg, progress=False)
    assert a.images.shape == (8, 1, 28, 28) and torch.equal(a.images, b.images)
    assert a.provenance["kind"] == "synthetic" and a.provenance["seed"] == 3
    loss = BNStatLoss(canonical.unfolded)
    noise = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert loss.loss(a.images) < 0.5 * loss.loss(noise)


def test_data_free_without_bn_is_refused():
    from edgekit.synth.zeroq import distill
    c = canonicalize(no_bn(), torch.zeros(1, 1, 28, 28), "nobn")
    with pytest.raises(UserError, match="--calib"):
        distill(c, SynthConfig(num_samples=2, iterations=1), progress=False)


class _ConverterStyle(torch.nn.Module):
    """What ONNX converters emit: a hard-sigmoid as clip(x * a + b, 0, 1) and a hard-swish
    divided by a constant tensor, plus a one-sided clamp that must stay as it is."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.register_buffer("six", torch.tensor(6.0))

    def forward(self, x):
        y = self.conv(x)
        y = y * torch.clip(y * 0.2 + 0.5, 0.0, 1.0)
        y = y * torch.nn.functional.relu6(y + 3) / self.six
        return torch.clamp(y, min=-1.0)


def test_clamps_and_divisions_by_constants_become_quantizable_equivalents():
    torch.manual_seed(0)
    model = _ConverterStyle().eval()
    x = torch.randn(2, 3, 8, 8)
    c = canonicalize(model, x[:1])
    targets = [str(n.target) for n in c.folded.graph.nodes if n.op == "call_function"]
    assert "aten.clip.default" not in targets and "aten.div.Tensor" not in targets
    assert targets.count("aten.hardtanh.default") == 2  # the clip and the relu6
    assert "aten.clamp.default" in targets  # one-sided: left alone
    assert torch.allclose(c.run(c.graph_module, x), model(x), atol=1e-6)
