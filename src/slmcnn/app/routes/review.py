"""Alert review on a build's page: a verdict (a false alarm labels the layer's Error tiles and
teaches the fine maps), and its undo."""

from typing import Annotated

from fastapi import APIRouter, Body, Request

from slmcnn.app.models import RequestBody, Review, Reviewed, Undone
from slmcnn.app.routes.common import Space, build_set, who
from slmcnn.app.sources import BuildSet, NotFound
from slmcnn.app.workspace import Workspace
from slmcnn.constants import CLASSES
from slmcnn.errors import SlmcnnError
from slmcnn.labels import OBJECT, POWDER
from slmcnn.monitoring.db.records import StoredAlert

router = APIRouter()


def stored_alert(ws: Workspace, set_id: str, alert_id: int) -> tuple[BuildSet, StoredAlert]:
    try:
        s = build_set(ws, set_id)
    except NotFound:
        raise NotFound(f"no alert {alert_id} in {set_id}") from None
    alert = next((a for a in s.db.alert_rows(s.build_id) if a.id == alert_id), None)
    if alert is None:
        raise NotFound(f"no alert {alert_id} in {set_id}")
    return s, alert


@router.post("/api/sets/{set_id}/alerts/{alert_id}", response_model=Reviewed)
def review_alert(request: Request, set_id: str, alert_id: int, body: Review, ws: Space):
    """A verdict; a false alarm labels the layer's Error tiles as the class given (`instead`:
    0 Powder, the default, or 1 Object). A second verdict replaces the first, undone first."""
    if body.instead not in (POWDER, OBJECT):
        raise SlmcnnError(f"instead must be {POWDER} (Powder) or {OBJECT} (Object): what the Error tiles really are")
    s, alert = stored_alert(ws, set_id, alert_id)
    previous = ws.store.unreview(s.key, alert_id)
    if previous:
        ws.undo_labels(set_id, alert.layer_id, previous, who(request, body))
    ws.forget_lessons(s.key, alert_id)
    false_alarm = body.verdict == "false_alarm"
    undo = ws.false_alarm_labels(set_id, alert.layer_id, who(request, body), body.instead) if false_alarm else []
    ws.store.review(s.key, alert_id, body.verdict, who(request, body), undo)
    # the fine maps learn it without retraining: a false alarm's places as sound, a confirmed defect as an example
    lesson = ws.teach(set_id, s.key, alert, "sound" if false_alarm else "defect")
    return {
        "verdict": body.verdict, "labelled": len(undo), "instead": CLASSES[body.instead] if undo else None,
        "lesson": lesson.id if lesson else None, "lessons": str(ws.config.lessons_path),
    }  # fmt: skip


@router.delete("/api/sets/{set_id}/alerts/{alert_id}", response_model=Undone)
def undo_review(
    request: Request,
    set_id: str,
    alert_id: int,
    ws: Space,
    body: Annotated[RequestBody, Body(default_factory=RequestBody)],
):
    """Undo a verdict: the alert is open again and the labels its false alarm wrote are as before."""
    s, alert = stored_alert(ws, set_id, alert_id)
    previous = ws.store.unreview(s.key, alert_id)
    if previous is None:
        raise NotFound(f"alert {alert_id} has no verdict to undo")
    forgotten = ws.forget_lessons(s.key, alert_id)
    restored = ws.undo_labels(set_id, alert.layer_id, previous, who(request, body))
    return {"restored": restored, "lessons_forgotten": forgotten}
