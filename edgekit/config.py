"""Versioned dataclass configs, convertible to and from plain dicts (JSON)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Type, TypeVar

CONFIG_VERSION = 2  # 2: the quant table holds the method's own config (PTQConfig, GenieConfig, ...)
C = TypeVar("C")

VALID_BITS = (2, 3, 4, 5, 6, 7, 8)
VALID_A_BITS = VALID_BITS + (16,)  # 16-bit activations: Qualcomm HTP's 16a8w/16a4w, and the simulation


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
    """The fields every quantization method takes; each method's own config subclasses it,
    beside its algorithm (``PTQConfig`` in ``edgekit.quant.algorithms.ptq``, ``ZeroQConfig``,
    ``GenieConfig``), and is registered with it (``Algorithm.config``), torchao-style.

    w_bits / a_bits: integer bit widths in 2..8 (a_bits also 16). per_channel: per-channel (else per-tensor)
    weight scales. activation_symmetric: zero point 0 for activations; None: what the targets'
    constraints require. overrides: per-module bit widths, {pattern: {"w_bits": B, "a_bits": B}};
    a pattern is a glob over module paths or node names, "type:Conv2d", or "@first"/"@last" (the
    first and last weighted layers; ``edgekit.quant.recipe.apply_overrides``). Mixed precision
    (``edgekit.quant.mixed_precision``): per-layer weight bits from {2, 4, 8} under a size budget
    in kB (1000 bytes) or an average bit width; the chosen bits become overrides keyed by node name.

    ``DATA_FREE``: fields a method sets when it calibrates on synthesized images, under the
    user's (:meth:`resolve`).
    """
    DATA_FREE: ClassVar[dict[str, Any]] = {}

    w_bits: int = 8
    a_bits: int = 8
    per_channel: bool = True
    activation_symmetric: bool | None = None
    overrides: dict[str, dict[str, int]] = field(default_factory=dict)
    mixed_precision: bool = False
    size_budget_kb: float | None = None
    avg_bits: float | None = None

    @classmethod
    def resolve(cls, data_free: bool, given: dict[str, Any] | None = None) -> "QuantConfig":
        """This method's config: its defaults, then ``DATA_FREE`` when ``data_free``, then the
        user's ``given`` fields. The user's override patterns come after the method's default
        ones (so a user's pattern wins where both match). Raises ValueError naming a field the
        method does not take."""
        given = dict(given or {})
        unknown = sorted(set(given) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not an option of {cls.__name__}")
        base = cls()
        fields = {**(cls.DATA_FREE if data_free else {}), **given}
        fields["overrides"] = {**base.overrides, **(given.get("overrides") or {})}
        return dataclasses.replace(base, **fields)


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
    # the method's config (Algorithm.config, e.g. GenieConfig), resolved (method_config); None:
    # the method's defaults, with its data-free ones when data_free
    quant: QuantConfig | None = None
    synth: SynthConfig | None = None  # None: the model's own budget (zoo entry), else SynthConfig()
    synth_overrides: dict[str, Any] = field(default_factory=dict)  # flags the user gave
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
    "small": {"synth": {"num_samples": 32, "batch_size": 32, "iterations": 20}, "recon_iterations": 30,
              "finetune_steps": 30},
}


def method_config(method: str, data_free: bool, given: dict[str, Any] | None = None) -> QuantConfig:
    """The config of ``method`` (its registered class, ``Algorithm.config``) from its defaults,
    its data-free defaults when ``data_free``, then the ``given`` fields (:meth:`QuantConfig.resolve`).
    Raises UserError for an unknown method, ValueError naming a field the method does not take."""
    from edgekit.registry import ALGORITHMS
    return ALGORITHMS.get(method).config.resolve(data_free, given)


def _quant_v1(method: str, quant: dict[str, Any], quant_overrides: dict[str, Any]) -> dict[str, Any]:
    """A config_version 1 ``quant`` table (one flat bag for every method) as the method's own
    fields: ``quant_overrides`` (the flags given over the data-free defaults) is merged in, and
    keys the method never read are dropped: another method's, ``bn_folding`` (always on) and
    ``first_last_8bit`` (Genie's @first/@last, which its config's default overrides give back
    when resolved, :meth:`QuantConfig.resolve`)."""
    from edgekit.registry import ALGORITHMS
    quant = {**quant, **quant_overrides}
    names = {f.name for f in dataclasses.fields(ALGORITHMS.get(method).config)}
    return {k: v for k, v in quant.items() if k in names}


def run_config_from_dict(d: dict[str, Any]) -> RunConfig:
    """A RunConfig from the dict ``to_dict`` wrote (the manifest's ``quantization.config``) or a
    TOML holding the same keys; missing keys take their defaults, and the ``quant`` table's
    fields are given to the method's config over its defaults (:func:`method_config`).
    config_version 1 dicts are migrated. Raises ValueError naming an unknown key or a wrong
    config_version, UserError for an unknown method."""
    d = dict(d)
    version = d.pop("config_version", CONFIG_VERSION)
    if version not in (1, CONFIG_VERSION):
        raise ValueError(f"config_version {version} is not 1 or {CONFIG_VERSION}")
    quant, synth = dict(d.pop("quant", None) or {}), d.pop("synth", None)
    method = d.get("method", RunConfig.method)
    if version == 1:
        quant = _quant_v1(method, quant, d.pop("quant_overrides", None) or {})
    cfg = from_dict(RunConfig, d)
    cfg.quant = method_config(method, cfg.data_free, quant)
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
