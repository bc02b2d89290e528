"""Quantization algorithms: each a config dataclass plus a registered function
``(canonical, config, CalibrationSource, placement=NAME) -> QuantRecipe``, in one module; ``placement`` is
the targets' placement policy (``edgekit.quant.placement``), for methods that reconstruct
through the quantized graph."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from edgekit.config import QuantConfig
from edgekit.errors import UserError


@dataclass(frozen=True)
class Algorithm:
    """A registered quantization method.

    fn: (CanonicalModel, config, CalibrationSource, placement=str) -> QuantRecipe, where config
    is an instance of ``config``.
    config: the method's config dataclass (a ``QuantConfig`` subclass defined beside ``fn``):
    its defaults, and in ``DATA_FREE`` the fields it sets with --data-free.
    synthesizer: the data-free calibration source it uses with --data-free ("zeroq", "genie"),
    or None when it needs real data (--calib).
    mixed_precision: whether fn honours per-layer weight bits in ``overrides`` (--mixed-precision).
    check: (CanonicalModel, method name) -> None, raising UserError when the method does not fit
    the model; run before any calibration data is read or synthesized.
    plan: (folded GraphModule, config, method name) -> QuantRecipe, the recipe's layout before
    calibration (what the targets check); None: ``edgekit.quant.recipe.plan_recipe`` of the
    config's bit widths, granularity, symmetry and overrides (see :func:`plan_for`).
    """
    name: str
    fn: Callable
    config: type[QuantConfig]
    synthesizer: str | None
    description: str
    mixed_precision: bool = False
    check: Callable | None = None
    plan: Callable | None = None


def plan_for(algo: Algorithm, gm, cfg: QuantConfig, method: str):
    """The recipe layout ``algo`` will fill for ``cfg`` on the folded graph ``gm`` (targets check
    it before calibration). Raises ValueError for a bad override."""
    if algo.plan is not None:
        return algo.plan(gm, cfg, method)
    from edgekit.quant.recipe import plan_recipe
    return plan_recipe(gm, method, cfg.w_bits, cfg.a_bits, cfg.per_channel, bool(cfg.activation_symmetric),
                       cfg.overrides)


def algorithm_of(config: QuantConfig) -> Algorithm:
    """The registered method whose config class is ``type(config)``. Raises UserError when none is."""
    from edgekit.registry import ALGORITHMS
    for name in ALGORITHMS.names():
        if type(config) is ALGORITHMS.get(name).config:
            return ALGORITHMS.get(name)
    raise UserError(f"{type(config).__name__} is no method's config: give one of "
                    f"{', '.join(ALGORITHMS.get(n).config.__name__ for n in ALGORITHMS.names())}")
