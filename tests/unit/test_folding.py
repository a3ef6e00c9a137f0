import torch

from slmcnn.folding import FoldedSlmCnn, for_evaluation
from slmcnn.model import create_model


def trained_looking(arch: str, seed: int = 0) -> torch.nn.Module:
    """A network whose BatchNorm layers hold non-trivial statistics and affine parameters."""
    torch.manual_seed(seed)
    return with_batchnorm_statistics(create_model(arch))


def with_batchnorm_statistics(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for block in model.features:
            norm = block[2]
            norm.running_mean.normal_()
            norm.running_var.uniform_(0.2, 3.0)
            norm.weight.uniform_(0.3, 2.0)
            norm.bias.normal_()
    return model.eval()


def test_negative_batchnorm_scale_keeps_the_original_network():
    model = trained_looking("slmcnn-tiny")
    with torch.no_grad():
        model.features[2][2].weight[0] = -0.5  # max-pooling no longer commutes with this channel
    assert for_evaluation(model) is model


def test_folding_takes_a_snapshot():
    model = trained_looking("slmcnn-tiny")
    folded = for_evaluation(model)
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        before = folded(x)
        model.features[0][0].weight.mul_(2)
        assert torch.equal(folded(x), before)
        assert not torch.allclose(for_evaluation(model)(x), before)


def test_small_feature_maps_fold_too():
    """The last blocks of a 32-pixel network see 4x4 and 2x2 maps, all border: the shift that stands
    for the BatchNorm must still meet zero padding exactly as the BatchNorm's output did."""
    from dataclasses import replace

    from slmcnn.model import MODEL_SPECS, SlmCnn

    torch.manual_seed(1)
    model = with_batchnorm_statistics(SlmCnn(replace(MODEL_SPECS["slmcnn-tiny"], patch=32)))
    folded = for_evaluation(model)
    assert isinstance(folded, FoldedSlmCnn)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        reference = model(x)
        assert torch.allclose(folded(x), reference, atol=1e-4 * reference.abs().max().item())
