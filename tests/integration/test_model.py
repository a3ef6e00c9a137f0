import pytest
import torch

from slmcnn.model import MODEL_SPECS, create_model


@pytest.mark.parametrize("name", sorted(MODEL_SPECS))
def test_forward_and_backward(name):
    model = create_model(name)
    x = torch.randn(2, 3, 128, 128)
    logits = model(x)
    assert logits.shape == (2, 3)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
