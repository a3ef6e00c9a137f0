"""The start page (every set: builds with their grades, open alerts and whether they are live, and
folders of photos) and a set's page (its layers, alerts and where errors recur)."""

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Body, Request
from fastapi.responses import HTMLResponse

from slmcnn.app.models import OpenFolder, PhotoFolder, SetEntry, SetSummary
from slmcnn.app.routes.common import Space, page
from slmcnn.app.sources import BuildSet, overviews
from slmcnn.app.workspace import Workspace

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def index(request: Request, ws: Space):
    return page(request, "index.html", model=ws.model_path.name)


@router.get("/sets/{set_id}", response_class=HTMLResponse)
def set_page(request: Request, set_id: str, ws: Space):
    s = ws.get_set(set_id)
    return page(request, "set.html", set_id=s.id, name=s.name, kind=s.kind)


@router.get("/api/sets", response_model=list[SetEntry], response_model_exclude_unset=True)
def list_sets(ws: Space):
    return set_entries(ws, ws.sets())


@router.get("/api/folders", response_model=list[PhotoFolder])
def photo_folders(ws: Space):
    """The folders of photos under --data, to pick one to open."""
    return ws.photo_folders()


@router.post("/api/sets", response_model=SetEntry, response_model_exclude_unset=True)
def open_set(ws: Space, body: Annotated[OpenFolder, Body(default_factory=OpenFolder)]):
    return set_entries(ws, [ws.open_folder(body.folder)])[0]


def set_entries(ws: Workspace, sets: list) -> list[dict]:
    """Sets as the start page lists them; what it shows of builds is read with a few queries per
    database and per labels store, whatever the number of builds."""
    labelled, reviewed, glance = ws.store.labelled_per_set(), ws.store.reviewed(), overviews(sets)
    entries = []
    for s in sets:
        doc = {"id": s.id, "kind": s.kind, "name": s.name, "labelled": labelled.get(s.key, 0)}
        if isinstance(s, BuildSet):
            seen, live = glance[s.id]
            doc["layers"], doc["source"] = seen.layers, Path(s.source.removeprefix("sqlite:///")).name
            doc["build"], doc["machine"] = (s.row.name, s.row.machine) if s.row else (s.name, "")
            doc["grades"], doc["last_layer"], doc["live"] = seen.grades, seen.last, live
            doc["alerts_open"] = sum(1 for a in seen.alerts if a not in reviewed.get(s.key, set()))
        else:
            doc["layers"] = s.count()
        entries.append(doc)
    return entries


@router.get("/api/sets/{set_id}", response_model=SetSummary, response_model_exclude_unset=True)
def set_summary(set_id: str, ws: Space):
    s = ws.get_set(set_id)
    labelled = ws.store.counts(s.key)
    doc = set_entries(ws, [s])[0]
    if not isinstance(s, BuildSet):
        doc["layer_list"] = [
            {"index": i, "file": p.name, "labelled": labelled.get(p.name, 0)} for i, p in enumerate(s.files())
        ]
        doc["alerts"], doc["recurrence"], doc["regions"] = [], [], []
        return doc
    stored = s.stored()
    doc["layer_list"] = [
        {"index": i, "number": layer.number, "file": layer.file, **{k.lower(): v for k, v in layer.fractions.items()},
         "labelled": labelled.get(layer.file, 0), "grade": layer.grade}
        for i, layer in enumerate(stored)
    ]  # fmt: skip
    where = {layer.id: i for i, layer in enumerate(stored)}
    reviews = ws.store.reviews(s.key)
    doc["alerts"] = [
        {"id": a.id, "layer": a.alert.layer, "index": where.get(a.layer_id), "file": a.alert.file,
         "grade": a.alert.grade, "rule": a.alert.rule, "message": a.alert.message, "value": a.alert.value,
         "regions": a.alert.regions, "pushed": a.alert.pushed,
         "verdict": reviews.get(a.id, (None,))[0], "who": reviews.get(a.id, (None, None))[1]}
        for a in s.db.alert_rows(s.build_id)
    ]  # fmt: skip
    doc["recurrence"], doc["regions"] = recurrence(ws, s, stored) if stored else ([], [])
    return doc


def recurrence(ws: Workspace, s: BuildSet, stored: list) -> tuple[list, list]:
    """Where errors recur over a build's stored layers (report.error_history), kept while no layer is added."""
    from slmcnn.monitoring.report import error_history

    def history():
        heat, regions = error_history(stored, s.db.tile_grids([layer.id for layer in stored]))
        return heat.round(4).tolist(), [g.to_json() for g in regions[:30]]

    return ws.recurrence.get((s.key, len(stored), stored[-1].id), history)  # stored layers never change
