import pytest
import torch

from slmcnn.folding import FoldedSlmCnn, for_evaluation
from tests.unit.test_folding import trained_looking


@pytest.mark.parametrize("arch", ["slmcnn-tiny", "slmcnn"])
def test_folded_network_is_the_same_function_and_gradient(arch):
    model = trained_looking(arch)
    folded = for_evaluation(model)
    assert isinstance(folded, FoldedSlmCnn)
    x = torch.randn(3, 3, 128, 128) * 2
    with torch.no_grad():
        reference = model(x)
        assert torch.allclose(folded(x), reference, atol=1e-4 * reference.abs().max().item())
    grads = []
    for network in (model, folded):
        xg = x.clone().requires_grad_(True)
        torch.softmax(network(xg), 1)[:, 1].sum().backward()
        grads.append(xg.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-4 * grads[0].abs().max().item())
