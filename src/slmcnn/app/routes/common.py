"""What every router shares: the workspace of the app, a page from its template, who sends a request."""

from typing import Annotated

from fastapi import Depends, Request

from slmcnn.app.models import RequestBody
from slmcnn.app.sources import BuildSet, FolderSet, NotFound
from slmcnn.app.workspace import Workspace
from slmcnn.constants import CLASS_COLOURS, CLASSES


def workspace(request: Request) -> Workspace:
    return request.app.state.workspace


Space = Annotated[Workspace, Depends(workspace)]


def page(request: Request, template: str, **context):
    """An HTML page: its template with the token, the user and the classes' names and colours."""
    state = request.app.state
    colours = {c: "#{:02x}{:02x}{:02x}".format(*CLASS_COLOURS[c]) for c in CLASSES}
    shared = {"token": state.token, "user": state.config.user, "classes": list(CLASSES), "colours": colours}
    return state.templates.TemplateResponse(request, template, {**shared, **context})


def who(request: Request, body: RequestBody) -> str:
    """Who sent a request: the name it gives, else the app's user."""
    return str(body.who or request.app.state.config.user or "anonymous")[:80]


def build_set(ws: Workspace, set_id: str) -> BuildSet:
    s = ws.get_set(set_id)
    if not isinstance(s, BuildSet):
        raise NotFound(f"{set_id} is a folder of photos, not a monitored build")
    return s


def folder_set(ws: Workspace, set_id: str) -> FolderSet:
    s = ws.get_set(set_id)
    if not isinstance(s, FolderSet):
        raise NotFound(f"{set_id} is a monitored build; set a camera up from a folder of raw frames")
    return s
