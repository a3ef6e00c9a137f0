import pytest
import torch

from slmcnn.errors import ModelFileError
from slmcnn.model import count_parameters, create_model


def test_reference_parameter_counts_match_keras_summary():
    trainable, with_running_stats = count_parameters(create_model("slmcnn"))
    assert trainable == 3_079_171
    assert with_running_stats == 3_080_643


def test_batchnorm_uses_keras_defaults():
    bns = [m for m in create_model().modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 5
    assert all(bn.eps == 1e-3 and bn.momentum == pytest.approx(0.01) for bn in bns)


def test_reference_layer_order():
    block = create_model().features[1]
    kinds = [type(m).__name__ for m in block]
    assert kinds == ["Conv2d", "ReLU", "BatchNorm2d", "MaxPool2d", "Dropout"]
    assert [b[-1].p for b in create_model().features[1:]] == [0.1, 0.2, 0.3, 0.3]


def test_unknown_architecture_lists_known_ones():
    with pytest.raises(ModelFileError, match="slmcnn-tiny"):
        create_model("resnet")
