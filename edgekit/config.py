"""Versioned dataclass configs, convertible to and from plain dicts (JSON)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Type, TypeVar

CONFIG_VERSION = 1
C = TypeVar("C")

VALID_BITS = (2, 3, 4, 5, 6, 7, 8)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass config as a JSON-ready dict with its ``config_version``."""
    d = dataclasses.asdict(cfg)
    d["config_version"] = CONFIG_VERSION
    return d


def from_dict(cls: Type[C], d: dict[str, Any]) -> C:
    """Build ``cls`` from a dict written by ``to_dict``; unknown keys raise ValueError."""
    d = dict(d)
    version = d.pop("config_version", CONFIG_VERSION)
    if version != CONFIG_VERSION:
        raise ValueError(f"{cls.__name__}: config_version {version} is not {CONFIG_VERSION}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {sorted(unknown)}")
    return cls(**d)


@dataclass
class SynthConfig:
    """Distilled-data synthesis budget (ZeroQ, Sec. 3.1).

    num_samples: images to distil; batch_size: images optimised together; iterations: Adam
    steps per batch; lr: Adam learning rate on the pixels; seed: makes the result reproducible.
    The defaults (32 images, 100 steps; ZeroQ's reference: 500 steps) keep the reference model's
    synthesis under a minute on 2 CPU cores. label_loss: weight of a cross-entropy term toward a random target class per image (the class
    prior of GDFQ, Xu et al. 2020, Sec. 3.2), which makes the logits as confident as on real
    images; 0 gives plain ZeroQ.
    Genie-D (``edgekit.synth.genie``) also reads: latent_dim (size of each sample's latent),
    generator_lr / latent_lr (Adam learning rates of the generator and of the latents), swing
    (random +-1 px shift of the input of strided convs during synthesis). ``genie()`` gives its
    CPU-sized default budget.
    """
    num_samples: int = 32
    batch_size: int = 32
    iterations: int = 100
    lr: float = 0.5
    seed: int = 0
    label_loss: float = 1.0
    latent_dim: int = 256
    generator_lr: float = 0.01
    latent_lr: float = 0.01
    swing: bool = True

    @classmethod
    def genie(cls, **overrides) -> "SynthConfig":
        """Genie-D's default budget on a 2-core CPU (the paper: 1024 samples, batches of 128,
        4000 iterations each on a GPU): 256 samples, batches of 64, 200 iterations."""
        return cls(**{"num_samples": 256, "batch_size": 64, "iterations": 200, **overrides})


@dataclass
class QuantConfig:
    """What to quantize and how: bit widths, granularity, activation range estimator.

    w_bits / a_bits: integer bit widths in 2..8. act_estimator: "minmax", "percentile" or
    "mse" (whitepaper Sec. 3.5 lists min/max and MSE-optimal clipping). percentile: the
    two-sided percentile for "percentile" (99.99 keeps [0.01 %, 99.99 %]). bn_ranges: how the
    ranges of BN-backed tensors use BN statistics (``edgekit.quant.bn_ranges``, at
    ``bn_range_sigmas`` standard deviations): "off", "union" with the data's, or "replace".
    """
    w_bits: int = 8
    a_bits: int = 8
    per_channel: bool = True
    # symmetric activations (zero point 0); None: what the targets' constraints require
    activation_symmetric: bool | None = None
    act_estimator: str = "percentile"
    percentile: float = 99.99
    bn_ranges: str = "off"
    bn_range_sigmas: float = 4.0
    bn_folding: bool = True
    # DFQ (Nagel et al. 2019): range equalization into depthwise convs and bias correction,
    # applied by the calibration of ptq/zeroq (edgekit.quant.equalize, .bias_correction)
    equalize: bool = False
    bias_correction: bool = False
    output_range_margin: float = 1.0  # the model outputs' ranges times this (ptq.widen_output_ranges)
    # Genie-M block reconstruction (edgekit.quant.algorithms.genie): Adam steps per block, batch
    # size, QDrop probability, AdaRound regulariser weight, Adam learning rates of the rounding
    # variables and of the (log) step sizes. (Its first/last layers at 8 bits are the overrides
    # @first/@last, edgekit.quant.recipe.FIRST_LAST_8BIT.)
    recon_iterations: int = 400
    recon_batch_size: int = 32
    qdrop_p: float = 0.5
    round_reg: float = 0.01
    recon_lr_rounding: float = 1e-3
    recon_lr_scale: float = 5e-4
    recon_seed: int = 0  # batch sampling and QDrop masks
    # Mixed precision (edgekit.quant.mixed_precision): per-layer weight bits from {2, 4, 8}
    # under a size budget in kB (1000 bytes) or an average bit width; the chosen bits become
    # overrides keyed by node name.
    mixed_precision: bool = False
    size_budget_kb: float | None = None
    avg_bits: float | None = None
    # Per-module bit widths, torchao-style: {pattern: {"w_bits": B, "a_bits": B}}; a pattern is a
    # glob over module paths or node names, or "type:Conv2d" (edgekit.quant.recipe.apply_overrides)
    overrides: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass
class RunConfig:
    """One ``edgekit quantize`` run: model, method, data source, targets."""
    model: str = "resnet20_fmnist"
    task: str | None = None  # edgekit.registry.TASKS; None: the zoo entry's, else classification
    method: str = "zeroq"
    data_free: bool = True
    calib_path: str | None = None
    calib_samples: int = 512
    targets: list[str] = field(default_factory=list)  # none: pipeline.resolve_targets picks
    quant: QuantConfig = field(default_factory=QuantConfig)
    synth: SynthConfig | None = None  # None: the model's own budget (zoo entry), else SynthConfig()
    synth_overrides: dict[str, Any] = field(default_factory=dict)  # flags the user gave
    quant_overrides: dict[str, Any] = field(default_factory=dict)  # over the model's data-free defaults
    # The model's preprocessing, declared by the user (never guessed from a shape): x =
    # (pixel * pixel_scale - mean) / std per channel, or input_range [lo, hi] for pixels 0..255.
    # None of them: the zoo entry's, else no dataset and no pixel bound (the input's range is
    # the calibration data's).
    mean: list[float] | None = None
    std: list[float] | None = None
    pixel_scale: float | None = None
    input_range: list[float] | None = None


# `edgekit quantize --preset`: budgets applied before the explicit flags. "small" is the quick
# check the tests use (about a minute for Genie W4A4 on the reference model, 2 CPU cores).
PRESETS: dict[str, dict] = {
    "default": {},
    "small": {"synth": {"num_samples": 32, "batch_size": 32, "iterations": 20}, "recon_iterations": 30},
}


def run_config_from_dict(d: dict[str, Any]) -> RunConfig:
    """A RunConfig from the dict ``to_dict`` wrote (the manifest's ``quantization.config``) or a
    TOML holding the same keys; missing keys take their defaults. Raises ValueError naming an
    unknown key or a wrong config_version."""
    d = dict(d)
    version = d.pop("config_version", CONFIG_VERSION)
    if version != CONFIG_VERSION:
        raise ValueError(f"config_version {version} is not {CONFIG_VERSION}")
    quant, synth = dict(d.pop("quant", None) or {}), d.pop("synth", None)
    if quant.pop("first_last_8bit", False) and d.get("method", "zeroq") == "genie":  # bundles before @first/@last
        quant["overrides"] = {"@first": {"w_bits": 8, "a_bits": 8}, "@last": {"w_bits": 8, "a_bits": 8},
                              **(quant.get("overrides") or {})}
    cfg = from_dict(RunConfig, d)
    cfg.quant = from_dict(QuantConfig, quant)
    cfg.synth = from_dict(SynthConfig, synth) if synth else None
    return cfg


def load_run_config(path) -> RunConfig:
    """The run config in ``path``: a TOML file (the keys of ``RunConfig``, with ``[quant]`` and
    ``[synth]`` tables) or a bundle's ``manifest.json`` (its ``quantization.config``), or a
    bundle folder. Raises UserError naming the file and what is wrong."""
    import json
    import tomllib
    from pathlib import Path

    from edgekit.errors import UserError
    p = Path(path)
    if p.is_dir():
        p = p / "manifest.json"
    if not p.is_file():
        raise UserError(f"--config {path} does not exist; give a .toml file, a bundle's manifest.json or a bundle folder")
    try:
        if p.suffix == ".toml":
            d = tomllib.loads(p.read_text())
        elif p.suffix == ".json":
            m = json.loads(p.read_text())
            d = m["quantization"]["config"] if "quantization" in m else m
        else:
            raise UserError(f"--config {p}: give a .toml file or a bundle's manifest.json")
        return run_config_from_dict(d)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"--config {p} cannot be parsed ({str(e).splitlines()[0]})") from None
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"--config {p}: {e}; keys are those of manifest.json's quantization.config") from None
