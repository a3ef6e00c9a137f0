"""Setting a camera up from a folder of raw frames: corners clicked on a frame, good layers picked
from thumbnails, camera.json written (app.camera_setup)."""

from typing import Annotated

from fastapi import APIRouter, Body, Request
from fastapi.responses import HTMLResponse, Response

from slmcnn.app import camera_setup
from slmcnn.app.models import CameraRequest
from slmcnn.app.routes.common import Space, folder_set, page
from slmcnn.errors import SlmcnnError

router = APIRouter()


@router.get("/sets/{set_id}/camera", response_class=HTMLResponse)
def camera_page(request: Request, set_id: str, ws: Space):
    s = folder_set(ws, set_id)
    return page(request, "camera.html", set_id=s.id, name=s.name, count=s.count())


@router.get("/api/sets/{set_id}/camera")
def camera_proposal(set_id: str, ws: Space, index: int = 0) -> dict:
    """The corners found on a frame and the doubts about them (camera_setup.propose)."""
    return camera_setup.propose(folder_set(ws, set_id), index, ws.camera)


@router.get("/api/sets/{set_id}/layers/{index}/raw")
def raw_image(set_id: str, index: int, ws: Space, side: int = camera_setup.SHOWN):
    """A raw frame to click corners on, or (a small `side`) a thumbnail of the good-layer picker."""
    if not 32 <= side <= camera_setup.SHOWN:
        raise SlmcnnError(f"side must be 32..{camera_setup.SHOWN}")
    jpeg, scale = camera_setup.frame_jpeg(folder_set(ws, set_id), index, side)
    return Response(jpeg, media_type="image/jpeg", headers={"X-Scale": f"{scale:.6f}", "Cache-Control": "no-store"})


@router.post("/api/sets/{set_id}/camera")
def camera_write(set_id: str, ws: Space, body: Annotated[CameraRequest, Body(default_factory=CameraRequest)]) -> dict:
    """camera.json from the corners and good layers (camera_setup.write_camera's answer)."""
    corners = camera_setup.corner_list(body.corners)
    folder = folder_set(ws, set_id)
    return camera_setup.write_camera(
        ws, folder, corners, body.index, body.good, body.size, body.error_threshold, body.replace
    )
