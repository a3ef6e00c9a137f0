"""The store's listings read many rows per SQL statement: the report, the app's start page, a
build's page and its proposals, the monitor's history and its closing tally take as many
statements for 4 builds of 6 layers as for 2 builds of 3 (a query per build or per layer would
grow with them)."""

import importlib.util
from pathlib import Path

import numpy as np
from sqlalchemy import event

from slmcnn.grading import grade_layer
from slmcnn.monitoring import Database
from slmcnn.monitoring.alerts import Alert
from slmcnn.monitoring.db.records import FileStamp
from slmcnn.monitoring.operator import Tally
from slmcnn.monitoring.report import write_report
from slmcnn.predict import LayerResult
from slmcnn.tiles import TileGeometry

GRID = TileGeometry(np.arange(3) * 32, np.arange(3) * 32, 96, 96, 32, 32)


def stored_builds(path: Path, builds: int, layers: int) -> Database:
    """A monitor's database of `builds` builds of `layers` layers each, every other layer alerted."""
    db, rng = Database(path), np.random.default_rng(0)
    for b in range(builds):
        build = db.open_build(f"/camera/{b}", machine="m1")
        for number in range(1, layers + 1):
            probabilities = rng.dirichlet((1, 1, 1), GRID.count).astype(np.float32)
            image = np.zeros((96, 96, 3), np.uint8)
            result = LayerResult(Path(f"/camera/{b}/{number:05d}.png"), image, GRID, probabilities, image[..., 0], 0.1)
            result.anomaly = rng.random(GRID.count).astype(np.float32)
            grade = grade_layer(result.tile_classes, probabilities[:, 2], result.anomaly, GRID)
            alert = Alert.of_layer(number, result.path.name, grade, "b", "m1") if number % 2 else None
            build.add_layer(number, result, grade, alert, None, FileStamp(1, 1.0, "x"))
    return db


class Statements:
    """Counts the SQL statements an engine runs."""

    def __init__(self, db: Database):
        self.count = 0
        event.listen(db.engine, "before_cursor_execute", self._seen)

    def _seen(self, *args) -> None:
        self.count += 1

    def of(self, call) -> int:
        self.count = 0
        call()
        return self.count


def statements(tmp_path: Path, builds: int, layers: int, app_model: Path | None) -> dict[str, int]:
    folder = tmp_path / f"{builds}x{layers}"
    folder.mkdir()
    db = stored_builds(folder / "m.sqlite", builds, layers)
    counter, build = Statements(db), db.open_build("/camera/0", machine="m1")
    counts = {
        "report": counter.of(lambda: write_report(db, folder / "r.html")),
        "history": counter.of(lambda: build.history(layers)),
        "tally": counter.of(lambda: Tally.of(db, "/camera/0", "m1")),
    }
    assert len(db.tile_grids([layer.id for layer in db.layers(1)])) == layers  # what the counts are of
    if app_model is not None:
        from fastapi.testclient import TestClient

        from slmcnn.app.server import create_app
        from slmcnn.app.workspace import AppConfig

        config = AppConfig([db.source], [], app_model, labels=folder / "labels.sqlite", token="t")
        app = create_app(config)
        for _, served in app.state.workspace.databases:
            event.listen(served.engine, "before_cursor_execute", counter._seen)
        client = TestClient(app, base_url="http://127.0.0.1")
        sets = client.get("/api/sets").json()
        assert len(sets) == builds and sets[0]["layers"] == layers and sets[0]["alerts_open"] == (layers + 1) // 2
        counts["start page"] = counter.of(lambda: client.get("/api/sets").raise_for_status())
        counts["build page"] = counter.of(lambda: client.get("/api/sets/b0-1").raise_for_status())
        counts["proposals"] = counter.of(lambda: client.get("/api/sets/b0-1/proposals?count=5").raise_for_status())
    return counts


def test_listings_take_as_many_statements_for_more_builds_and_layers(tmp_path, tiny_model_file):
    has_app = all(importlib.util.find_spec(name) for name in ("fastapi", "httpx"))
    app = tiny_model_file if has_app else None
    small, large = statements(tmp_path, 2, 3, app), statements(tmp_path, 4, 6, app)
    assert small == large, (small, large)
    assert large["report"] <= 6 and large["history"] == 2  # builds, machines, layers, alerts, tiles; ids, tiles


def test_a_query_per_layer_is_caught(tmp_path):
    """The check above can fail: a listing that reads each layer's tiles alone grows with the layers."""
    small, large = (stored_builds(tmp_path / f"{n}.sqlite", 1, n) for n in (3, 6))
    per_layer = [Statements(db).of(lambda db=db: [db.tile_grid(x.id) for x in db.layers(1)]) for db in (small, large)]
    assert per_layer[1] > per_layer[0]
