"""Genie-D data synthesis (Jeon et al. 2023, "Genie: Show Me the Data for Quantization", Sec. 3.1).

A small generator (latent -> linear -> two x2 upsampling conv-BN-LeakyReLU stages -> conv -> tanh)
and one latent vector per sample are optimised *together* against the BatchNorm-statistics loss
(the ZeroQ loss of ``edgekit.synth.bn_loss``). The generator ties the samples of a batch to a
shared, smooth image prior; the per-sample latents keep them diverse. "Swing convolution" shifts
the input of every strided conv by a random -1/0/+1 pixel in each direction at each step, so
the images do not learn the aliasing pattern of the stride grid (Sec. 3.1, Fig. 3).

Each batch gets a fresh generator and fresh latents, as in the paper. The paper's budget is a
GPU's (1024 samples, batches of 128, 4000 steps); ``SynthConfig.genie()`` scales it to 2 CPU cores.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import fx, nn
from tqdm import tqdm

from edgekit.config import SynthConfig
from edgekit.data.calibration import CalibrationSource
from edgekit.models.canonical import CanonicalModel
from edgekit.registry import SYNTHESIZERS
from edgekit.synth.bn_loss import BNStatLoss
from edgekit.synth.zeroq import require_bn

_CONV = torch.ops.aten.conv2d.default


class Generator(nn.Module):
    """Latents float32 [B, latent_dim] -> images float32 [B, C, H, W].

    The tanh output is mapped onto the model's input range: per channel onto [lo, hi] when
    ``bounds`` (float32 [C] each) is known, else normalised per batch to mean 0 / std 1 (a
    BatchNorm without affine, as the paper's generator ends).
    """

    def __init__(self, shape: tuple[int, int, int], latent_dim: int = 256, width: int = 32,
                 bounds: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        super().__init__()
        c, h, w = shape
        self.shape = shape
        self.h0, self.w0 = max(1, (h + 3) // 4), max(1, (w + 3) // 4)
        self.width = width
        self.fc = nn.Linear(latent_dim, width * self.h0 * self.w0)
        self.body = nn.Sequential(
            nn.BatchNorm2d(width),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.LeakyReLU(0.2),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(width, width // 2, 3, padding=1), nn.BatchNorm2d(width // 2), nn.LeakyReLU(0.2),
            nn.Conv2d(width // 2, c, 3, padding=1), nn.Tanh())
        if bounds is not None:
            self.register_buffer("lo", bounds[0].float().view(1, -1, 1, 1))
            self.register_buffer("hi", bounds[1].float().view(1, -1, 1, 1))
        else:
            self.lo = self.hi = None
            self.norm = nn.BatchNorm2d(c, affine=False, track_running_stats=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = self.body(self.fc(z).view(-1, self.width, self.h0, self.w0))
        if y.shape[-2:] != self.shape[1:]:
            y = F.interpolate(y, size=self.shape[1:], mode="bilinear", align_corners=False)
        if self.lo is not None:
            return self.lo + (y + 1) * 0.5 * (self.hi - self.lo)
        return self.norm(y)


class SwingBNStatLoss(BNStatLoss):
    """BNStatLoss whose strided convs see their input shifted by a random (dy, dx) in {-1, 0, 1}^2
    (replicate padding, then a crop of the original size): Genie's swing convolution."""

    def __init__(self, gm: fx.GraphModule, generator: torch.Generator, swing: bool = True,
                 static_batch: int | None = None) -> None:
        super().__init__(gm, static_batch)
        self.g, self.swing = generator, swing

    def call_function(self, target, args, kwargs):
        if self.swing and target is _CONV:
            stride = args[3] if len(args) > 3 else kwargs.get("stride", [1])
            if max(stride) > 1:
                x = args[0]
                h, w = x.shape[-2:]
                dy, dx = (int(v) for v in torch.randint(0, 3, (2,), generator=self.g))
                x = F.pad(x, (1, 1, 1, 1), mode="replicate")[..., dy:dy + h, dx:dx + w]
                args = (x, *args[1:])
        return super().call_function(target, args, kwargs)


def genie_distill(canonical: CanonicalModel, cfg: SynthConfig, progress: bool = True,
                  output_prior=None) -> CalibrationSource:
    """Synthesize ``cfg.num_samples`` images float32 [N, C, H, W] with Genie-D.

    Per batch of ``cfg.batch_size``: a new generator and per-sample latents (float32
    [B, cfg.latent_dim]) trained with Adam (``cfg.generator_lr``, ``cfg.latent_lr``) for
    ``cfg.iterations`` steps on the BN-statistics loss, plus the task's ``output_prior`` when
    given (a factory as in ``edgekit.synth.zeroq.distill``; classification's is the class prior). Deterministic for a given ``cfg.seed`` on one machine.
    Raises UserError when the model has no BatchNorm layer.
    """
    require_bn(canonical)
    t0 = time.time()
    gm = canonical.unfolded
    for p in gm.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(cfg.seed)
    bn_loss = SwingBNStatLoss(gm, g, cfg.swing, canonical.batch)
    shape = tuple(canonical.example_input.shape[1:])
    total, bs = cfg.num_samples, max(1, min(cfg.batch_size, cfg.num_samples))
    bar = tqdm(total=cfg.iterations * ((total + bs - 1) // bs), desc="Genie-D synthesis", unit="step",
               disable=not progress, leave=False)
    batches = []
    for start in range(0, total, bs):
        n = min(bs, total - start)
        with torch.random.fork_rng():  # seeded generator init, global RNG left alone
            torch.manual_seed(int(torch.randint(0, 2 ** 31 - 1, (1,), generator=g)))
            gen = Generator(shape, cfg.latent_dim, bounds=canonical.input_bounds)
        z = torch.randn((n, cfg.latent_dim), generator=g).requires_grad_(True)
        opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.generator_lr, betas=(0.5, 0.999))
        opt_z = torch.optim.Adam([z], lr=cfg.latent_lr, betas=(0.5, 0.999))
        sched = [torch.optim.lr_scheduler.CosineAnnealingLR(o, max(1, cfg.iterations)) for o in (opt_g, opt_z)]
        prior = output_prior(n, g) if output_prior is not None else None
        gen.train()
        for _ in range(cfg.iterations):
            opt_g.zero_grad(set_to_none=True)
            opt_z.zero_grad(set_to_none=True)
            loss = bn_loss.loss(gen(z))
            if prior is not None:
                loss = loss + prior(bn_loss.last_output)
            loss.backward()
            opt_g.step()
            opt_z.step()
            for s in sched:
                s.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        with torch.no_grad():  # the batch as the final generator renders it (batch statistics)
            batches.append(gen(z).detach())
    bar.close()
    return CalibrationSource(torch.cat(batches), {
        "kind": "synthetic", "method": "genie", "num_samples": total, "seed": cfg.seed,
        "iterations": cfg.iterations, "swing": cfg.swing, "output_prior": output_prior is not None, "seconds": round(time.time() - t0, 2)})


SYNTHESIZERS.register("genie", genie_distill)
