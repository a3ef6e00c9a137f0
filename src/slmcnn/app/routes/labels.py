"""Labels and what is made of them: a layer's tile labels, the tiles to label next, the export of
class folders, the fine-tune and the model made current."""

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Body, Request

from slmcnn.app.finetune import export_labels
from slmcnn.app.models import (
    CurrentModel,
    Exported,
    FineTuneAnswer,
    FineTuneRequest,
    Labels,
    MadeCurrent,
    RequestBody,
    Stored,
)
from slmcnn.app.proposals import Proposal
from slmcnn.app.routes.common import Space, who
from slmcnn.app.sources import NotFound
from slmcnn.constants import CLASSES
from slmcnn.errors import SlmcnnError
from slmcnn.files import fresh_folder

router = APIRouter()


def whole_number(value) -> bool:
    """An int from JSON, and not true or false (which Python counts as 1 and 0)."""
    return isinstance(value, int) and not isinstance(value, bool)


@router.post("/api/sets/{set_id}/layers/{index}/labels", response_model=Stored)
def set_labels(request: Request, set_id: str, index: int, body: Labels, ws: Space):
    """One label ({row, col, cls, checked}) or several ({labels: [...]}); cls null clears."""
    data = ws.layer(set_id, index)
    if data.photo_changed:
        ws.image(data)  # refused: labels must be cut from the photo that was classified
    rows, cols = data.geometry.shape
    for item in body.items():
        row, col = item.row, item.col
        if not (whole_number(row) and whole_number(col) and 0 <= row < rows and 0 <= col < cols):
            raise NotFound(f"no tile ({row!r:.20}, {col!r:.20}) in a {rows}x{cols} grid")
        if item.cls is not None and not 0 <= item.cls < len(CLASSES):
            raise SlmcnnError(f"cls must be null or one of 0..{len(CLASSES) - 1} ({', '.join(CLASSES)})")
    for item in body.items():
        checked = item.cls is not None if item.checked is None else item.checked
        ws.store.set_label(data.ref, item.row, item.col, item.cls, checked, who(request, body))
    return {"stored": len(body.items())}


@router.get("/api/sets/{set_id}/proposals", response_model=list[Proposal])
def proposals(set_id: str, ws: Space, count: int = 20):
    """The tiles to label next, the most telling first (app.proposals)."""
    if not 1 <= count <= 500:
        raise SlmcnnError("count must be 1..500")
    return ws.proposals(set_id, count)


@router.post("/api/export", response_model=Exported)
def export(ws: Space):
    done = export_labels(ws.store, fresh_folder(ws.work, "export"))
    return {
        "folder": str(done.folder),
        "tiles": done.tiles,
        "layers": done.layers,
        "counts": done.counts,
        "replaced": done.replaced,
    }


@router.get("/api/model", response_model=CurrentModel)
def model_info(ws: Space):
    info = ws.model.info
    return {"name": ws.model_path.name, "path": str(ws.model_path), "arch": info.arch, "patch": info.patch,
            "current": str(ws.work / "current.safetensors")}  # fmt: skip


@router.get("/api/finetune", response_model=FineTuneAnswer)
def finetune_state(ws: Space):
    return ws.finetune.state.to_json()


@router.post("/api/finetune", response_model=FineTuneAnswer)
def finetune_start(ws: Space, body: Annotated[FineTuneRequest, Body(default_factory=FineTuneRequest)]):
    return ws.finetune.start(ws.store, ws.model_path, body.epochs, body.lr).to_json()


@router.post("/api/finetune/current", response_model=MadeCurrent)
def make_current(request: Request, ws: Space, body: Annotated[RequestBody, Body(default_factory=RequestBody)]):
    state = ws.finetune.state
    new = Path(state.run) / "model" / "model.safetensors"
    if state.state != "done" or not new.is_file():
        raise SlmcnnError("no finished fine-tune to make current")
    target = ws.make_current(new, who(request, body))
    camera = f" --camera {ws.camera_file}" if ws.camera_file else ""
    return {
        "model": str(target),
        "monitor": f"slmcnn monitor ... --model {target}{camera}",
        "camera": ws.camera_note
        or (f"camera profile rebuilt for the new model: {ws.camera_file}" if ws.camera_file else None),
    }
