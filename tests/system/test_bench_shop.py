"""benchmarks/bench_shop.py: what it says of a shop's stored layers and of an archive's output folder."""

import argparse
import os

import pytest

from tests.conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_shop")


def shop(interval: float = 2.0) -> argparse.Namespace:
    return argparse.Namespace(monitors=2, interval=interval)


FED = {("p1", "1.png"): 100.0, ("p1", "2.png"): 102.0, ("p2", "1.png"): 101.0, ("p2", "2.png"): 103.0}


def test_every_layer_stored_once_and_the_slowest_is_named(bench):
    rows = [("p1", "1.png", "done", 100.5), ("p1", "2.png", "done", 102.4), ("p2", "1.png", "done", 101.2)]
    rows.append(("p2", "2.png", "done", 106.0))
    figures = bench.shop_figures(rows, FED, shop(), 4)
    assert figures["stored_once"] and figures["all_done"] and figures["offered_layers_per_s"] == 1.0
    assert figures["latency_max_s"] == 3.0 and figures["slowest_layer"] == "p2 2.png"
    assert figures["stored_layers_per_s"] == round(4 / 6.0, 3)


@pytest.mark.parametrize(
    "rows",
    [
        [("p1", "1.png", "done", 101), ("p1", "2.png", "done", 103), ("p2", "1.png", "done", 102)],  # one missing
        [("p1", "1.png", "done", 101), ("p1", "1.png", "done", 101.5), ("p1", "2.png", "done", 103)]
        + [("p2", "1.png", "done", 102), ("p2", "2.png", "done", 104)],  # one twice
        [("p1", "1.png", "done", 101), ("p1", "2.png", "done", 103), ("p2", "1.png", "done", 102)]
        + [("p2", "3.png", "done", 104)],  # one not fed
    ],
)
def test_a_missing_repeated_or_foreign_layer_is_not_stored_once(bench, rows):
    assert not bench.shop_figures(rows, FED, shop(), 4)["stored_once"]


def test_the_archive_figures_count_files_per_folder_and_scale_them(bench, tmp_path):
    out = tmp_path / "out"
    (out / "pages").mkdir(parents=True)
    for layer in range(40):
        for suffix in (".json", ".overlay.png"):
            path = out / f"{layer:05d}{suffix}"
            path.write_bytes(b"x" * 10)
            os.utime(path, (1000 + layer, 1000 + layer))  # one layer a second
        (out / "pages" / f"{layer:05d}.html").write_bytes(b"x" * 5)
    figures = bench.archive_figures("run", out, 40, 50.0, 10, "load 0")
    assert figures["files_per_layer_by_folder"] == {".": 2.0, "pages": 1.0}
    assert figures[f"files_in_largest_folder_at_{bench.ARCHIVE_LAYERS}"] == 2 * bench.ARCHIVE_LAYERS
    assert figures["steady_layers_per_s"] == 1.0 and figures["start_s"] == 10.0 and figures["bytes_per_layer"] == 25
