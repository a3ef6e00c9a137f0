"""predict-layer --ray: a local Ray cluster on loopback gives what the local path gives, file for file."""

import csv
import json

import pytest

from tests.conftest import run_cli
from tests.integration.test_archive import needs_ray

SETTINGS = ("--backend", "torch", "--precision", "fp32", "--stride", "64")


def _summary(folder) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(open(folder / "summary.csv"))]


@needs_ray
def test_two_ray_workers_give_the_local_results_tile_for_tile(tiny_build, tiny_model_file, tmp_path):
    import pyarrow.parquet as pq

    args = (tiny_build / "layers", "--model", tiny_model_file, "--truth", tiny_build / "masks", *SETTINGS)
    local = run_cli("predict-layer", *args, "--out", tmp_path / "local", "--map", "tiles")
    assert local.returncode == 0, local.stderr
    ray = run_cli("predict-layer", *args, "--out", tmp_path / "ray", "--ray", "--ray-workers", "2")
    assert ray.returncode == 0, ray.stderr
    assert "wrote 10 layer(s)" in ray.stdout and "2 Ray worker(s)" in ray.stdout

    table = pq.read_table(tmp_path / "ray" / "layers.parquet").to_pylist()
    assert [row["index"] for row in table] == list(range(10)) and len({row["worker"] for row in table}) == 2
    for row in table:
        stem = row["image"].rsplit("/", 1)[-1].removesuffix(".png")
        mine, theirs = (json.loads((tmp_path / run / f"{stem}.json").read_text()) for run in ("ray", "local"))
        assert {**mine, "seconds": 0} == {**theirs, "seconds": 0}
        assert row["tile_classes"] == [c for line in theirs["grid"] for c in line]
        assert row["tile_accuracy"] == pytest.approx(theirs["truth"]["tile_accuracy"])
        for kind in ("overlay", "classes"):
            png = f"{stem}.{kind}.png"
            assert (tmp_path / "ray" / png).read_bytes() == (tmp_path / "local" / png).read_bytes()
    assert _summary(tmp_path / "ray") == _summary(tmp_path / "local")
