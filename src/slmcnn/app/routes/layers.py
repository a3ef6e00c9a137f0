"""The layer page: a layer's tiles (classes, probabilities, anomaly, labels), its photo and the
explanation of one tile."""

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from slmcnn.app.models import LayerView
from slmcnn.app.routes.common import Space, page
from slmcnn.app.sources import BuildSet

router = APIRouter()


@router.get("/sets/{set_id}/layers/{index}", response_class=HTMLResponse)
def layer_page(request: Request, set_id: str, index: int, ws: Space):
    s = ws.get_set(set_id)
    return page(request, "layer.html", set_id=s.id, name=s.name, index=index, count=s.count())


@router.get("/api/sets/{set_id}/layers/{index}", response_model=LayerView)
def layer_view(set_id: str, index: int, ws: Space):
    s = ws.get_set(set_id)
    data = s.layer(index, ws)
    rows, cols = data.geometry.shape
    labels = ws.store.layer_labels(data.ref.set_key, data.ref.layer)
    cell = lambda r, c, k: labels[(r, c)][k] if (r, c) in labels else None  # noqa: E731
    doc = {
        "set": set_id, "index": index, "count": s.count(), "file": data.ref.layer,
        "number": data.ref.number, "build": data.ref.build, **data.geometry.to_json(), "rows": rows, "cols": cols,
        "classes": data.classes.tolist(),
        "probabilities": data.probabilities.reshape(rows, cols, -1).round(4).tolist(),
        "anomaly": data.anomaly.reshape(rows, cols).round(3).tolist() if data.anomaly is not None else None,
        "labels": [[cell(r, c, 0) for c in range(cols)] for r in range(rows)],
        "checked": [[bool(cell(r, c, 1)) for c in range(cols)] for r in range(rows)],
        "straightened": data.camera is not None, "model": ws.model_path.name,
        "photo_changed": data.photo_changed, "grade": None, "why": None, "regions": [],
    }  # fmt: skip
    if isinstance(s, BuildSet):
        doc["grade"], doc["why"], doc["regions"] = s.judgement(index)
    return doc


@router.get("/api/sets/{set_id}/layers/{index}/image")
def layer_image(set_id: str, index: int, ws: Space):
    data = ws.layer(set_id, index)
    return Response(ws.jpeg(data), media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})


@router.get("/api/sets/{set_id}/layers/{index}/explain")
def explain_tile(set_id: str, index: int, row: int, col: int, ws: Space):
    png, what = ws.explain_tile(ws.layer(set_id, index), row, col)
    headers = {"X-Target": what["target"], "X-Delta": f"{what['delta']:.5f}"}
    return Response(png, media_type="image/png", headers=headers)
