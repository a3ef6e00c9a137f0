"""The public Python API (slmcnn.__all__) and what importing slmcnn does not do."""

import numpy as np
import pytest

import slmcnn
from slmcnn.labels import NOT_A_CLASS, NOT_A_CLASS_PIXEL, LabelRule, tile_labels
from slmcnn.tiles import geometry


def test_the_public_names():
    assert set(slmcnn.__all__) >= {
        "load_model",
        "create_backend",
        "predict_layers",
        "explain_patches",
        "train",
        "calibrate",
        "LayerResult",
    }
    assert all(getattr(slmcnn, name) is not None for name in slmcnn.__all__)
    from slmcnn.train import TrainConfig  # the module of the same name does not replace the function

    assert callable(slmcnn.train) and TrainConfig


def test_tile_labels_is_the_one_mask_to_label_rule():
    mask = np.zeros((256, 384), np.uint8)
    mask[:128, 128:256] = 1  # a part filling tile (0, 1)
    mask[130:140, 10:20] = 2  # 100 error pixels: below the rule's 120, ambiguous
    mask[200:220, 300:320] = 2  # 400: Error
    where = geometry(256, 384, 128)
    assert tile_labels(mask, where).reshape(2, 3).tolist() == [[0, 1, 0], [0, 0, 2]]
    strict = tile_labels(mask, where, LabelRule(), ambiguous=False).reshape(2, 3)
    assert strict.tolist() == [[0, 1, 0], [NOT_A_CLASS, 0, 2]]
    assert NOT_A_CLASS_PIXEL == 255 and np.uint8(NOT_A_CLASS_PIXEL) == np.uint8(NOT_A_CLASS % 256)
    with pytest.raises(slmcnn.errors.DataError, match="384x256"):
        tile_labels(mask[:128], where)
