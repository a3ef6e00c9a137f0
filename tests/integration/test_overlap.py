"""Decoding, the network and the caller overlap across layers (predict.Predictor): the same results
as one layer after another, in input order, bad layers reported where they are, none lost."""

import threading

import numpy as np
import pytest

from slmcnn.backends import TorchBackend
from slmcnn.images import read
from slmcnn.pipeline import RunOptions, run_layers
from slmcnn.predict import LayerFailure, Predictor, classify_pixels
from slmcnn.tiles import geometry, tile


@pytest.fixture(scope="module")
def layers(tiny_build):
    return sorted((tiny_build / "layers").glob("*.png"))


@pytest.fixture
def backend(tiny_model):
    return TorchBackend(tiny_model, "fp32")


class Calls:
    """A backend that counts its calls and can hold one until told to go on."""

    def __init__(self, backend, fail_at: int | None = None):
        self.backend, self.fail_at, self.name = backend, fail_at, "calls"
        self.count, self.second = 0, threading.Event()

    def probabilities(self, patches):
        self.count += 1
        if self.count == self.fail_at:
            raise RuntimeError("the network broke")
        if self.count == 2:
            self.second.set()
        return self.backend.probabilities(patches)


def test_overlapped_results_are_the_serial_ones_in_order(layers, backend):
    predictor = Predictor(backend, 128, batch_tiles=20)  # 9 tiles a layer: several batches
    results = list(predictor.predict(layers))
    assert [r.path for r in results] == layers
    for path, result in zip(layers, results):
        image = read(path)
        expected = backend.probabilities(tile(image, 128).patches)
        np.testing.assert_allclose(result.probabilities, expected, atol=1e-5)
        grid = geometry(image.shape[0], image.shape[1], 128, 128)
        np.testing.assert_array_equal(result.class_map, classify_pixels(grid, expected)[0])


def test_a_failing_layer_in_the_middle_is_reported_in_its_place(layers, backend, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    inputs = [*layers[:3], broken, *layers[3:6], tmp_path / "missing.png", *layers[6:]]
    outcomes = list(run_layers(inputs, backend, RunOptions()))
    assert [o.path for o in outcomes] == inputs
    failed = [i for i, o in enumerate(outcomes) if o.error is not None]
    assert failed == [3, 7] and all(o.result is not None for i, o in enumerate(outcomes) if i not in failed)


def test_the_network_runs_the_next_batch_while_the_caller_holds_a_layer(layers, backend):
    calls = Calls(backend)
    results = Predictor(calls, 128, batch_tiles=9).predict(layers)  # one layer a batch
    next(results)
    assert calls.second.wait(timeout=60)  # the caller has not asked for more, yet the network went on
    assert len(list(results)) == len(layers) - 1


def test_an_error_of_the_network_reaches_the_caller_and_a_caller_may_stop_early(layers, backend):
    results = Predictor(Calls(backend, fail_at=2), 128, batch_tiles=9).predict(layers)
    assert not isinstance(next(results), LayerFailure)
    with pytest.raises(RuntimeError, match="the network broke"):
        next(results)
    early = Predictor(backend, 128, batch_tiles=9).predict(layers)
    next(early)
    early.close()  # the network thread is told to stop and is waited for
    assert not any(t.name == "slmcnn-network" for t in threading.enumerate())


@pytest.mark.parametrize(("batch_tiles", "thread"), [(20, "slmcnn-decode"), (4, "slmcnn-network")])
def test_each_layer_is_prepared_once_on_the_pool_or_for_a_big_photo_in_the_network_thread(
    layers, backend, batch_tiles, thread
):
    """`prepare` (the fine maps' texture) runs with the decoding, several layers ahead; a photo cut
    in strips (more tiles than a batch) is prepared in the network thread: its texture is large."""
    prepared = []
    predictor = Predictor(backend, 128, batch_tiles=batch_tiles)  # 9 tiles a layer: 4 cuts it in strips
    predictor.prepare = lambda image: prepared.append(threading.current_thread().name) or image.shape
    results = list(predictor.predict(layers))
    assert [r.seen for r in results] == [read(path).shape for path in layers]
    assert len(prepared) == len(layers) and all(name.startswith(thread) for name in prepared)
