"""Active labelling: the tiles the app proposes to label next."""

import numpy as np

from slmcnn.app.proposals import propose, tile_worth
from slmcnn.app.sources import LayerData
from slmcnn.app.store import LayerRef
from slmcnn.tiles import geometry


def layer(index: int, probabilities: np.ndarray, anomaly=None) -> LayerData:
    grid = geometry(6 * 32, 6 * 32, 32)
    ref = LayerRef("s", f"{index:05d}.png", "b", str(index), "", grid.to_json())
    classes = probabilities.argmax(1).reshape(grid.shape)
    return LayerData(ref, index, grid, probabilities, classes, anomaly, None)


def sure_powder(tiles: int = 36) -> np.ndarray:
    return np.tile(np.array([0.97, 0.02, 0.01], np.float32), (tiles, 1))


def test_worth_is_unsureness_plus_anomaly():
    p = np.array([[0.9, 0.05, 0.05], [0.45, 0.1, 0.45]], np.float32)
    np.testing.assert_allclose(tile_worth(p, None), [0.15, 1.0], atol=1e-6)
    np.testing.assert_allclose(tile_worth(p, np.array([4.0, 0.0])), [0.65, 1.0], atol=1e-6)


def test_rare_classes_unsure_tiles_and_spread_first_and_labelled_tiles_never():
    first, second = sure_powder(), sure_powder()
    first[7] = [0.1, 0.1, 0.8]  # the one Error tile of the set
    first[8] = [0.5, 0.45, 0.05]  # unsure, beside tile 7 and beside tile 9
    first[9] = [0.52, 0.46, 0.02]
    second[20] = [0.3, 0.65, 0.05]  # an Object tile
    second[30] = [0.49, 0.02, 0.49]
    layers = [layer(0, first), layer(1, second)]
    picked = propose(layers, {}, 4)
    assert [(t.predicted, t.index, t.row, t.col) for t in picked[:2]] == [("Error", 0, 1, 1), ("Object", 1, 3, 2)]
    assert {(t.index, t.row, t.col) for t in picked[2:]} == {(1, 5, 0), (0, 1, 3)}  # (0,1,2) is beside (0,1,1)
    why = next(t.why for t in picked if (t.index, t.row) == (1, 5))
    assert why.startswith("unsure:") and "Powder 0.49" in why and "Error 0.49" in why
    again = propose(layers, {"00000.png": {(1, 1)}}, 4)
    assert (0, 1, 1) not in {(t.index, t.row, t.col) for t in again}
    everything = propose(layers, {}, 200)
    assert len(everything) == 72 and len({(t.index, t.row, t.col) for t in everything}) == 72


def test_anomalous_tiles_come_before_plain_ones():
    p = sure_powder()
    anomaly = np.zeros(36, np.float32)
    anomaly[35] = 3.0
    (top,) = propose([layer(0, p, anomaly)], {}, 1)
    assert (top.row, top.col) == (5, 5) and "anomaly 3.0" in top.why
