"""Train the reference ResNet-20 on the real Fashion-MNIST training split.

Usage: .venv/bin/python examples/train_resnet20.py [--epochs 15] [--out PATH]

Needs the Debian package ``dataset-fashion-mnist``. SGD with Nesterov momentum, one-cycle
learning rate, random crop (pad 2) + horizontal flip, label smoothing 0.1. The checkpoint
(state_dict, float32, ~1.1 MB) is what the zoo loads as ``resnet20_fmnist``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edgekit.data.fashion_mnist import load_tensors  # noqa: E402
from edgekit.models.resnet import ResNet20  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "edgekit/models/checkpoints/resnet20_fmnist.pt"


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random crop with 2-pixel zero padding (in normalised space: pad with the min) + h-flip."""
    n = x.shape[0]
    padded = F.pad(x, (2, 2, 2, 2), value=float(x.min()))
    dx, dy = torch.randint(0, 5, (2,), generator=g).tolist()
    out = padded[:, :, dy:dy + 28, dx:dx + 28]
    flip = torch.rand(n, generator=g) < 0.5
    out = torch.where(flip[:, None, None, None], out.flip(3), out)
    return out.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), 1000):
        correct += (model(x[i:i + 1000].contiguous(memory_format=torch.channels_last)).argmax(1) == y[i:i + 1000]).sum().item()
    return correct / len(x)


def fit(model: torch.nn.Module, opt: torch.optim.Optimizer, xtr: torch.Tensor, ytr: torch.Tensor,
        xte: torch.Tensor, yte: torch.Tensor, epochs: int, batch_size: int, lr: float,
        g: torch.Generator, out: Path) -> None:
    """Train with ``opt`` under a one-cycle schedule (peak ``lr``), random crop + flip and label
    smoothing 0.1, print the test top-1 after each epoch, and save the state_dict to ``out``
    (written to a temporary file, then renamed)."""
    steps = epochs * ((len(xtr) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    for epoch in range(epochs):
        model.train()
        t0 = time.time()
        perm = torch.randperm(len(xtr), generator=g)
        total = 0.0
        for i in range(0, len(xtr), batch_size):
            idx = perm[i:i + batch_size]
            loss = F.cross_entropy(model(augment(xtr[idx], g)), ytr[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        acc = evaluate(model, xte, yte)
        print(f"epoch {epoch + 1}/{epochs} loss {total / len(xtr):.4f} test top-1 {acc:.4f} "
              f"({time.time() - t0:.0f} s)", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    tmp = out.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(out)
    print(f"saved {out} (test top-1 {acc:.4f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    xtr, ytr = load_tensors("train")
    xte, yte = load_tensors("test")
    model = ResNet20().to(memory_format=torch.channels_last)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0}],
                          lr=args.lr, momentum=0.9, nesterov=True)
    fit(model, opt, xtr, ytr, xte, yte, args.epochs, args.batch_size, args.lr, g, args.out)


if __name__ == "__main__":
    main()
