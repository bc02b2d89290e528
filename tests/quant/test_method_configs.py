"""Per-method configs (issue 10, part 4): each method's config dataclass is registered with it,
resolves its defaults under the user's fields, and round-trips through the manifest's dict."""
from __future__ import annotations

import pytest

import edgekit
from edgekit.config import RunConfig, method_config, run_config_from_dict, to_dict
from edgekit.errors import UserError
from edgekit.quant.algorithms import algorithm_of
from edgekit.quant.algorithms.genie import GenieConfig
from edgekit.quant.algorithms.ptq import PTQConfig
from edgekit.quant.algorithms.zeroq import ZeroQConfig
from edgekit.registry import ALGORITHMS


def test_each_method_has_its_own_config_class():
    assert {n: ALGORITHMS.get(n).config for n in ("ptq", "zeroq", "genie")} == {
        "ptq": PTQConfig, "zeroq": ZeroQConfig, "genie": GenieConfig}
    assert algorithm_of(GenieConfig()).name == "genie" and edgekit.GenieConfig is GenieConfig
    assert not hasattr(PTQConfig(), "recon_iterations")


def test_data_free_defaults_sit_under_what_the_user_gives():
    assert method_config("zeroq", data_free=True).bn_ranges == "replace"
    assert method_config("zeroq", data_free=False).bn_ranges == "off"
    assert method_config("zeroq", data_free=True, given={"bn_ranges": "union"}).bn_ranges == "union"
    # a config file's [quant] keys are the user's too (version 1 let the data-free defaults win)
    cfg = run_config_from_dict({"method": "zeroq", "data_free": True, "quant": {"bn_ranges": "off", "w_bits": 4}})
    assert type(cfg.quant) is ZeroQConfig and (cfg.quant.bn_ranges, cfg.quant.w_bits, cfg.quant.equalize) == ("off", 4, True)


def test_the_manifest_dict_round_trips():
    cfg = RunConfig(method="genie", quant=method_config("genie", True, {"w_bits": 4, "a_bits": 4,
                                                                          "overrides": {"fc": {"w_bits": 8}}}))
    d = to_dict(cfg)
    assert d["config_version"] == 2 and "act_estimator" in d["quant"] and "recon_iterations" in d["quant"]
    back = run_config_from_dict(d)
    assert back.quant == cfg.quant and list(back.quant.overrides) == ["@first", "@last", "fc"]


def test_the_api_takes_the_method_from_the_config_type():
    with pytest.raises(UserError, match="GenieConfig .method genie., not a config of method ptq"):
        edgekit.quantize("resnet20_fmnist", GenieConfig(), method="ptq")
    with pytest.raises(UserError, match="is no method's config"):
        edgekit.quantize("resnet20_fmnist", edgekit.config.QuantConfig())
