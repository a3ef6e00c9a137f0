"""The shipped model must still do what docs/MODEL_CARD.md says on the example layers."""

from slmcnn.checkpoint import default_model_path, load_model, read_info
from slmcnn.model import count_parameters


def test_shipped_model_loads_and_is_small():
    path = default_model_path()
    assert path.is_file() and path.stat().st_size < 15 * 2**20
    info = read_info(path)
    assert info.arch == "slmcnn" and info.classes == ["Powder", "Object", "Error"] and info.training
    model, _ = load_model(path)
    assert count_parameters(model) == (3_079_171, 3_080_643)
