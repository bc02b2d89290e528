"""The reference hybrid vision transformers (MobileViT-style and EfficientFormer-style, trained on
real Fashion-MNIST by examples/train_hybrid_vit.py): the committed checkpoints classify the
shipped test split, export with torch.export as a user would, hold the transformer ops Q-HyViT
quantizes, and go through edgekit's calibration (the bias correction of a linear on tokens once
crashed on them)."""
from __future__ import annotations

import pytest
import torch

from edgekit.data.fashion_mnist import load_tensors
from edgekit.models.canonical import canonicalize
from edgekit.models.zoo import load_model

HYBRIDS = ["mobilevit_fmnist", "efficientformer_fmnist"]


@pytest.mark.parametrize("name", HYBRIDS)
def test_checkpoint_classifies_the_real_test_split(name):
    """Top-1 of the committed checkpoint on the first 2,000 shipped test images (the whole
    split's figure is in the checkpoint's training log and the README)."""
    loaded = load_model(name)
    x, y = load_tensors("test", 2000)
    with torch.no_grad():
        top1 = (loaded.model(x).argmax(1) == y).float().mean().item()
    assert top1 >= 0.90, top1
    assert loaded.dataset == "fashion-mnist" and loaded.preprocess is not None


@pytest.mark.parametrize("name", HYBRIDS)
def test_exported_program_holds_the_transformer_ops(name, tmp_path):
    """Exported the usual way (static batch 1) and canonicalized, the graph keeps what a hybrid
    ViT quantizer must place: convs with BatchNorm folded, linears, activation-by-activation
    matmuls, softmax, LayerNorm, and computes what the module computes."""
    loaded = load_model(name)
    ep = torch.export.export(loaded.model, (torch.randn(1, 1, 28, 28),))
    torch.export.save(ep, str(tmp_path / f"{name}.pt2"))
    user = load_model(str(tmp_path / f"{name}.pt2"))
    can = canonicalize(user.model, user.example_input, name)
    ops = {str(n.target).split(".")[1] for n in can.graph_module.graph.nodes
           if n.op == "call_function" and str(n.target).startswith("aten.")}
    assert {"conv2d", "linear", "matmul", "softmax", "layer_norm"} <= ops, sorted(ops)
    assert "batch_norm" not in " ".join(ops) and can.num_bn > 0
    x = load_tensors("test", 4)[0][:1]
    with torch.no_grad():
        torch.testing.assert_close(can.run(can.graph_module, x), loaded.model(x), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_data_free_mobilevit_pte_lists_what_xnnpack_leaves_in_float(cli, tmp_path):
    """``edgekit quantize mobilevit_fmnist --data-free`` (small budget, the .pte only): the
    bundle is written, the .pte runs in ExecuTorch and agrees with its simulation, and its
    manifest names per op what XNNPACK's placement leaves in float (softmax, LayerNorm, the
    activation-by-activation matmuls), with real op names (no shape arithmetic)."""
    import json
    out = tmp_path / "b"
    p = cli("quantize", "mobilevit_fmnist", "--data-free", "--num-samples", "16", "--iterations", "20",
            "--eval-samples", "500", "--target", "executorch-xnnpack", "--out", str(out), "--no-progress")
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads((out / "manifest.json").read_text())
    (r,) = m["evaluation"]["results"]
    assert r["agreement_with_simulation"] >= 0.97 and r["top1"] >= 0.80, json.dumps(r)
    (a,) = m["artifacts"]
    floats = {o["op"] for o in a["ops"]["float_ops"]}
    assert {"softmax", "layer_norm", "matmul"} <= floats and all(o.isidentifier() for o in floats), floats
    assert 0 < a["ops"]["ops_delegated"] <= a["ops"]["ops_total"]
