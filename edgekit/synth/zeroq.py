"""ZeroQ distilled data (Cai et al. 2020, Sec. 3.1, Eq. 2): start from Gaussian noise and
optimise the pixels with Adam so that every BN layer's input statistics match its running
statistics, plus a prior on the input's own statistics: mean 0 / std 1 for a normalised input
(ZeroQ's), or the middle and a quarter of a declared ``--input-range`` (a model fed raw 0..255
pixels would otherwise be distilled from near-black images). Reference defaults: lr 0.5, 500 iterations; edgekit's defaults are smaller to fit a
2-core CPU (see ``SynthConfig``)."""
from __future__ import annotations

import time

import torch
from tqdm import tqdm

from edgekit.config import SynthConfig
from edgekit.data.calibration import CalibrationSource
from edgekit.errors import UserError
from edgekit.models.canonical import CanonicalModel
from edgekit.registry import SYNTHESIZERS
from edgekit.synth.bn_loss import BNStatLoss, input_prior_loss


def require_bn(canonical: CanonicalModel) -> None:
    """Raise UserError when the model has no BatchNorm layer to synthesize data from."""
    if canonical.num_bn == 0:
        raise UserError(f"model {canonical.name} has no BatchNorm layer, so data-free calibration has no "
                        "statistics to match; give real calibration images with --calib PATH")


def distill(canonical: CanonicalModel, cfg: SynthConfig, progress: bool = True,
            output_prior=None) -> CalibrationSource:
    """Distil ``cfg.num_samples`` images float32 [N, C, H, W] from the model's BN statistics.

    output_prior: the task's loss on the model's outputs, a factory (n images, generator) ->
    (outputs -> scalar) given by ``Task.synthesis_prior`` (classification: the class prior);
    None: BN statistics and the input prior only. Deterministic for a given ``cfg.seed``.
    Raises UserError when the model has no BN layer.
    """
    require_bn(canonical)
    t0 = time.time()
    gm = canonical.unfolded
    for p in gm.parameters():
        p.requires_grad_(False)
    bn_loss = BNStatLoss(gm, canonical.batch)
    g = torch.Generator().manual_seed(cfg.seed)
    shape = tuple(canonical.example_input.shape[1:])
    batches = []
    total = cfg.num_samples
    bar = tqdm(total=cfg.iterations * ((total + cfg.batch_size - 1) // cfg.batch_size),
               desc="ZeroQ synthesis", unit="step", disable=not progress, leave=False)
    bounds = canonical.input_bounds
    if bounds is not None:
        lo, hi = (b.view(1, -1, 1, 1) for b in bounds)
    p_mean, p_std = canonical.input_prior or (0.0, 1.0)
    for start in range(0, total, cfg.batch_size):
        n = min(cfg.batch_size, total - start)
        x = p_mean + p_std * torch.randn((n, *shape), generator=g)
        if bounds is not None:
            x = torch.maximum(torch.minimum(x, hi), lo)
        x.requires_grad_(True)
        prior = output_prior(n, g) if output_prior is not None else None
        opt = torch.optim.Adam([x], lr=cfg.lr)
        for _ in range(cfg.iterations):
            opt.zero_grad(set_to_none=True)
            loss = bn_loss.loss(x) + input_prior_loss(x, p_mean, p_std)
            if prior is not None:
                loss = loss + prior(bn_loss.last_output)
            loss.backward()
            opt.step()
            if bounds is not None:  # keep pixels inside the valid image range
                with torch.no_grad():
                    x.copy_(torch.maximum(torch.minimum(x, hi), lo))
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        batches.append(x.detach())
    bar.close()
    return CalibrationSource(torch.cat(batches), {
        "kind": "synthetic", "method": "zeroq", "num_samples": total, "seed": cfg.seed,
        "iterations": cfg.iterations, "output_prior": output_prior is not None, "seconds": round(time.time() - t0, 2)})


SYNTHESIZERS.register("zeroq", distill)
