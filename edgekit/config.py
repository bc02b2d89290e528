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
    """
    num_samples: int = 64
    batch_size: int = 64
    iterations: int = 300
    lr: float = 0.5
    seed: int = 0


@dataclass
class QuantConfig:
    """What to quantize and how: bit widths, granularity, activation range estimator.

    w_bits / a_bits: integer bit widths in 2..8. act_estimator: "minmax", "percentile" or
    "mse" (whitepaper Sec. 3.5 lists min/max and MSE-optimal clipping). percentile: the
    two-sided percentile for "percentile" (99.99 keeps [0.01 %, 99.99 %]).
    """
    w_bits: int = 8
    a_bits: int = 8
    per_channel: bool = True
    act_estimator: str = "percentile"
    percentile: float = 99.99
    bn_folding: bool = True


@dataclass
class RunConfig:
    """One ``edgekit quantize`` run: model, method, data source, targets."""
    model: str = "resnet20_fmnist"
    method: str = "zeroq"
    data_free: bool = True
    calib_path: str | None = None
    calib_samples: int = 512
    targets: list[str] = field(default_factory=lambda: ["executorch-xnnpack", "litert"])
    quant: QuantConfig = field(default_factory=QuantConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
