"""The camera profile on generated frames: learned from good layers, no labels."""

import numpy as np

from slmcnn.profile import (
    ERROR,
    OBJECT,
    POWDER,
    decide,
    thresholds_from_scores,
)


def network_says(classes: list[int]) -> np.ndarray:
    """Probabilities of a network that calls each tile `classes[i]` with 0.8."""
    probs = np.full((len(classes), 3), 0.1, np.float32)
    probs[np.arange(len(classes)), classes] = 0.8
    return probs


def test_decide_rule():
    probs = network_says([POWDER, POWDER, OBJECT, ERROR, ERROR])
    anomaly = np.array([0.5, 1.5, 9.0, 0.5, 1.5])
    assert decide(probs, anomaly).tolist() == [POWDER, ERROR, OBJECT, POWDER, ERROR]
    assert decide(probs, anomaly + 0.2).tolist() == [POWDER, ERROR, OBJECT, ERROR, ERROR]  # kept above 0.5
    assert decide(probs, anomaly + 0.2, confirm=1.0).tolist() == [POWDER, ERROR, OBJECT, POWDER, ERROR]
    assert decide(probs, anomaly, confirm=0.0).tolist() == [POWDER, ERROR, OBJECT, ERROR, ERROR]


def test_an_unconfirmed_error_beside_a_sure_one_is_kept():
    # 3x3 layer: the network calls tiles 0, 1 and 8 Error; only tile 0 is confirmed by its anomaly
    probs = network_says([ERROR, ERROR, POWDER, POWDER, POWDER, POWDER, POWDER, POWDER, ERROR])
    anomaly = np.array([0.9, 0.1, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    alone = decide(probs, anomaly, confirm=0.5)
    assert alone[0] == ERROR and alone[1] == POWDER and alone[8] == POWDER
    beside = decide(probs, anomaly, confirm=0.5, grid_shape=(3, 3))
    assert beside[1] == ERROR  # shares an edge with the confirmed tile 0
    assert beside[8] == POWDER  # lone: the camera's look
    diagonal = network_says([ERROR, POWDER, POWDER, POWDER, ERROR, POWDER, POWDER, POWDER, POWDER])
    assert decide(diagonal, anomaly, confirm=0.5, grid_shape=(3, 3))[4] == POWDER  # corners do not count


def test_powder_beside_a_part_is_left_to_the_network():
    # 3x3 layer: the network calls tile 4 Object and the rest Powder; tiles 0 and 1 are anomalous
    probs = network_says([POWDER, POWDER, POWDER, POWDER, OBJECT, POWDER, POWDER, POWDER, POWDER])
    anomaly = np.array([1.5, 1.5, 0.2, 0.2, 3.0, 0.2, 0.2, 0.2, 0.2])
    decided = decide(probs, anomaly, grid_shape=(3, 3))
    assert decided[0] == ERROR  # a corner away from the part: the profile's call
    assert decided[1] == POWDER and decided[4] == OBJECT  # beside the part: the network's call
    assert decide(probs, anomaly, grid_shape=(3, 3), part_surroundings=True)[1] == ERROR
    error_beside = network_says([POWDER, ERROR, POWDER, POWDER, OBJECT, POWDER, POWDER, POWDER, POWDER])
    assert decide(error_beside, anomaly, grid_shape=(3, 3))[1] == ERROR  # the network's Error, confirmed


def test_a_layer_farther_as_a_whole_raises_only_what_stands_out():
    probs = network_says([POWDER, POWDER, POWDER, POWDER, ERROR])
    shifted = np.array([1.2, 1.3, 1.25, 3.0, 1.2])  # every tile over 1: the layer's look changed
    assert decide(probs, shifted).tolist() == [ERROR] * 5
    assert decide(probs, shifted, typical=0.5).tolist() == [POWDER, POWDER, POWDER, ERROR, ERROR]  # level 2.5
    usual = np.array([0.4, 0.5, 1.1, 0.5, 0.6])  # a layer at the good layers' level: 1 is the threshold
    assert decide(probs, usual, typical=0.5).tolist() == decide(probs, usual).tolist()


def test_the_network_s_sure_error_stays_unless_its_place_looked_the_same():
    # 3x3 layer: the network is sure of tiles 0-2 (0.95), unsure of tile 3 (0.8); every anomaly is
    # under `confirm`, which vetoed them all before
    probs = network_says([ERROR, ERROR, ERROR, ERROR] + [POWDER] * 5)
    probs[:3] = [0.03, 0.02, 0.95]
    anomaly = np.array([0.3, 0.3, 0.3, 0.3, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert (decide(probs, anomaly, confirm=0.5)[:4] == POWDER).all()  # seen 1: the threshold, as before
    seen = np.array([0.2, 0.2, 0.4, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2])  # tile 2's place looked like this
    decided = decide(probs, anomaly, confirm=0.5, seen=seen)
    assert decided[:3].tolist() == [ERROR, ERROR, POWDER] and decided[3] == POWDER
    # kept by the neighbour rule once its neighbours stand on their own
    assert decide(probs, anomaly, confirm=0.5, grid_shape=(3, 3), seen=seen)[:4].tolist() == [ERROR] * 4
    # a layer whose whole look changed (level 0.3 / 0.05 = 6) keeps them all the same
    level = decide(probs, anomaly, confirm=0.5, grid_shape=(3, 3), typical=0.05, seen=seen)
    assert level[:4].tolist() == [ERROR] * 4 and (level[4:] == POWDER).all()
    assert decide(probs, anomaly, confirm=0.5, seen=seen, sure=0.99)[:3].tolist() == [POWDER] * 3


def test_marks_get_their_own_threshold():
    rng = np.random.default_rng(0)
    left_out = rng.exponential(1.0, (12, 20)).astype(np.float32)
    left_out[:, 7] += 30  # a reflection, far off in every good frame
    thresholds, found = thresholds_from_scores(left_out)
    assert found["marks"] == [7]
    assert thresholds[7] >= 1.25 * left_out[:, 7].max() - 1e-4
    assert np.allclose(np.delete(thresholds, 7), found["threshold"])
    assert (left_out <= thresholds).all() and found["estimate"]["left_out_tiles_over"] == 0
    assert found["estimate"]["false_error_tiles_per_100_layers"] <= 1.0 + 1e-6


def test_a_channel_silent_on_every_good_frame_cannot_swamp_the_distance():
    from slmcnn.profile import SCALE_FLOOR, feature_scale

    rng = np.random.default_rng(0)
    flat = rng.normal(0, 1, (200, 16)).astype(np.float32)
    flat[:, 5] = 0.0  # a dead ReLU channel on the good tiles
    scale = feature_scale(flat)
    assert scale[5] >= SCALE_FLOOR * np.median(flat.std(0)) - 1e-6
    assert np.allclose(np.delete(scale, 5), np.delete(flat.std(0), 5))
    faint = np.zeros(16, np.float32)
    faint[5] = 0.002  # a faint activation on a new frame stays a small distance
    assert np.abs(faint / scale).max() < 0.1


def test_the_nearest_distance_is_the_brute_forces_with_either_product(monkeypatch):
    """oneDNN's fused product where PyTorch has it, PyTorch's own where not: the same distances."""
    import torch.nn.functional as F

    from slmcnn.profile import features

    rng = np.random.default_rng(3)
    queries = rng.standard_normal((300, 16), dtype=np.float32)
    memory = rng.standard_normal((200, 16), dtype=np.float32)
    memory[0] = queries[0]  # a query in the memory: distance 0
    brute = np.sqrt(((queries[:, None].astype(np.float64) - memory[None]) ** 2).sum(-1).min(1))
    found = [features.nearest_distance(queries, memory, chunk=64)]
    monkeypatch.setattr(features, "fused_product", lambda: F.linear)
    found.append(features.nearest_distance(queries, memory, chunk=64))
    for distance in found:
        assert distance.shape == (300,) and distance.dtype == np.float32
        np.testing.assert_allclose(distance, brute, atol=1e-4)
    np.testing.assert_allclose(found[0], found[1], atol=1e-5)
