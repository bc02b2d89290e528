import pytest

from edgekit.errors import UserError
from edgekit.registry import ALGORITHMS, MODELS, TARGETS, Registry


def test_builtin_entries_are_registered():
    assert {"executorch-xnnpack", "litert"} <= set(TARGETS.names())
    assert {"ptq", "zeroq"} <= set(ALGORITHMS.names())
    assert {"resnet20_fmnist", "mobilenet_v2", "espcn_x3", "mobilevit_fmnist", "efficientformer_fmnist"} <= set(MODELS.names())


def test_unknown_name_lists_known_ones():
    with pytest.raises(UserError, match="unknown target 'nope' \\(--target\\): known ones are .*executorch-xnnpack"):
        TARGETS.get("nope")


def test_duplicate_registration_is_an_error():
    r = Registry("thing")
    r.register("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        r.register("a", 2)


def test_target_profiles_declare_constraints():
    for name in ("executorch-xnnpack", "litert"):
        p = TARGETS.get(name).profile
        assert p.name == name and 8 in p.constraints.weight_bits and p.constraints.weight_symmetric


def test_every_target_names_a_registered_placement():
    from edgekit.registry import PLACEMENTS
    for name in TARGETS.names():
        assert TARGETS.get(name).profile.placement in PLACEMENTS.names(), name
    assert TARGETS.get("litert").profile.placement == "litert"
    assert TARGETS.get("executorch-xnnpack").profile.placement == "xnnpack"


def test_placement_gives_that_backends_quantizer():
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer

    from edgekit.quant.placement import quantizer_for
    from edgekit.quant.recipe import QuantRecipe
    r = QuantRecipe("test", 8, 8)
    from edgekit.quant.placement import PadsIntoConvs, TransformerOps
    xnn = quantizer_for("xnnpack", r)
    assert isinstance(xnn, PadsIntoConvs) and isinstance(xnn.base, XNNPACKQuantizer)
    assert isinstance(quantizer_for("qdq", r), XNNPACKQuantizer)
    assert TARGETS.get("onnx-qdq").profile.placement == "qdq"
    for q in (quantizer_for("litert", r), TARGETS.get("litert").quantizer(r)):
        assert isinstance(q, TransformerOps) and isinstance(q.base, PT2EQuantizer)
    from edgekit.quant.placement import HtpOps, InputsOnly
    assert isinstance(TARGETS.get("tensorrt").quantizer(r), InputsOnly)
    htp = TARGETS.get("qnn-htp").quantizer(r)
    assert isinstance(htp, HtpOps) and isinstance(htp.base, XNNPACKQuantizer)  # no pad folding for QNN
    with pytest.raises(UserError, match="unknown placement policy 'nope'"):
        quantizer_for("nope", r)


def test_no_algorithm_names_a_backend():
    """Quantization and synthesis get the placement as an argument; none looks a target up."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[1] / "edgekit"
    for sub in ("quant", "synth"):
        for f in (root / sub).rglob("*.py"):
            src = f.read_text()
            assert "TARGETS" not in src and "executorch-xnnpack" not in src, f
