import pytest

from edgekit.errors import UserError
from edgekit.registry import ALGORITHMS, MODELS, TARGETS, Registry


def test_builtin_entries_are_registered():
    assert {"executorch-xnnpack", "litert"} <= set(TARGETS.names())
    assert {"ptq", "zeroq"} <= set(ALGORITHMS.names())
    assert {"resnet20_fmnist", "mobilenet_v2"} <= set(MODELS.names())


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
