import pytest
import torch

from edgekit.errors import UserError
from edgekit.models.zoo import load_model
from tests.fixtures.models import tiny_bn


def test_pt2_file_loads_with_its_input_shape(tmp_path):
    model = tiny_bn()
    torch.export.save(torch.export.export(model, (torch.zeros(1, 1, 28, 28),)), str(tmp_path / "tiny.pt2"))
    loaded = load_model(str(tmp_path / "tiny.pt2"))
    assert loaded.name == "tiny" and tuple(loaded.example_input.shape) == (1, 1, 28, 28)
    assert loaded.dataset is None and loaded.preprocess is None  # never guessed from 1x28x28
    from edgekit.models.canonical import canonicalize
    c = canonicalize(loaded.model, loaded.example_input, loaded.name)
    x = torch.randn(3, 1, 28, 28)  # a batch-1 program becomes batch-polymorphic
    assert c.num_bn == 2 and torch.allclose(c.graph_module(x), model(x), atol=1e-5)


def test_factory_spec_and_errors():
    assert load_model("tests.fixtures.models:tiny_bn").name == "tiny_bn"
    with pytest.raises(UserError, match="cannot load model factory"):
        load_model("tests.fixtures.models:nope")
    with pytest.raises(UserError, match="unknown model"):
        load_model("resnet999")


def test_mobilenet_v2_takes_torchvision_weights_and_classifies_real_photos():
    """torchvision's checkpoint loads by key name (strict) and classifies foolbox's photos."""
    from edgekit.tasks.base import load_dataset
    loaded = load_model("mobilenet_v2")
    x, y = load_dataset("imagenet-photos")
    with torch.no_grad():
        acc = (loaded.model(x).argmax(1) == y).float().mean().item()
    assert x.shape == (20, 3, 224, 224) and acc >= 0.85
