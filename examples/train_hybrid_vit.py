"""Train a reference hybrid vision transformer on the real Fashion-MNIST training split:
the MobileViT-style ``edgekit.models.mobilevit`` or the EfficientFormer-style
``edgekit.models.efficientformer``.

Usage: .venv/bin/python examples/train_hybrid_vit.py --arch {mobilevit,efficientformer} [--epochs 12] [--out PATH]

The committed checkpoints: ``--arch mobilevit`` (12 epochs) and ``--arch efficientformer --epochs 20``.

Needs the Debian package ``dataset-fashion-mnist``. AdamW (weight decay 0.05 on matrices),
one-cycle learning rate, random crop (pad 2) + horizontal flip, label smoothing 0.1: the usual
recipe for small vision transformers. The checkpoint (state_dict, float32) is what the zoo loads
as ``mobilevit_fmnist`` / ``efficientformer_fmnist``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from edgekit.data.fashion_mnist import load_tensors  # noqa: E402
from edgekit.models.efficientformer import EfficientFormer  # noqa: E402
from edgekit.models.mobilevit import MobileViT  # noqa: E402
from train_resnet20 import fit  # noqa: E402

CHECKPOINTS = Path(__file__).resolve().parents[1] / "edgekit/models/checkpoints"
ARCHS = {"mobilevit": MobileViT, "efficientformer": EfficientFormer}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=sorted(ARCHS), required=True)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="train on the first N images (a quick check)")
    ap.add_argument("--out", type=Path, default=None, help="default: the zoo's <arch>_fmnist.pt")
    args = ap.parse_args()
    args.out = args.out or CHECKPOINTS / f"{args.arch}_fmnist.pt"
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    xtr, ytr = load_tensors("train")
    xte, yte = load_tensors("test")
    if args.limit:
        xtr, ytr = xtr[:args.limit], ytr[:args.limit]
    model = ARCHS[args.arch]().to(memory_format=torch.channels_last)
    print(f"{args.arch}: {sum(p.numel() for p in model.parameters())} parameters", flush=True)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0}],
                            lr=args.lr)
    fit(model, opt, xtr, ytr, xte, yte, args.epochs, args.batch_size, args.lr, g, args.out)


if __name__ == "__main__":
    main()
