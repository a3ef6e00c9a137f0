"""The web app's routes: pages (Jinja2 templates, plain JavaScript, every asset in the package) and
a JSON API. Requests name sets, layers and tiles by id, never by path; every state-changing request
needs the page's token, and a server bound beyond this machine needs it for every request."""

import hmac
import secrets
from pathlib import Path
from typing import Any

from fastapi import Body, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from slmcnn.app import camera_setup
from slmcnn.app.finetune import export_labels
from slmcnn.app.limits import BodyLimit
from slmcnn.app.sources import BuildSet, FolderSet, NotFound, PhotoChanged
from slmcnn.app.store import StoreBusy
from slmcnn.app.workspace import AppConfig, Workspace
from slmcnn.constants import CLASS_COLOURS, CLASSES, OBJECT, POWDER, __version__
from slmcnn.errors import SlmcnnError
from slmcnn.files import fresh_folder

HERE = Path(__file__).parent
TOKEN_HEADER = "x-slmcnn-token"
BODY = Body(default={})


def is_loopback(host: str) -> bool:
    """`localhost`, or an IP address of this machine (127.0.0.0/8, ::1): parsed, so that a name
    such as 127.0.0.1.evil.example, which anyone can make resolve here, is not one."""
    import ipaddress

    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def whole_number(value) -> bool:
    """An int from JSON, and not true or false (which Python counts as 1 and 0)."""
    return isinstance(value, int) and not isinstance(value, bool)


def host_name(host: str) -> str:
    """The name in a Host header, without its port ([::1]:8765 -> ::1)."""
    return host[1:].partition("]")[0] if host.startswith("[") else host.rpartition(":")[0] or host


def create_app(config: AppConfig, workspace: Workspace | None = None) -> FastAPI:
    """The app for a configuration; `config.token` (made up when not given) guards it."""
    token = config.token or secrets.token_urlsafe(24)
    config.token = token
    ws = workspace or Workspace(config)
    remote = not is_loopback(config.host)
    app = FastAPI(title="slmcnn", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.workspace, app.state.token = ws, token
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.add_middleware(BodyLimit)

    def given_token(request: Request) -> str:
        return request.headers.get(TOKEN_HEADER) or request.cookies.get("slmcnn_token") or ""

    @app.middleware("http")
    async def guard(request: Request, call_next):
        query = request.query_params.get("token", "")
        ok = hmac.compare_digest(given_token(request), token) or hmac.compare_digest(query, token)
        if not remote and not is_loopback(host_name(request.headers.get("host", ""))):
            # a page elsewhere that made its name resolve to this machine (DNS rebinding) gets nothing
            return JSONResponse({"error": "this server answers to 127.0.0.1 and localhost only"}, 403)
        if remote and not ok:
            return JSONResponse({"error": "this server needs its token: open the URL it printed"}, 401)
        if request.method not in ("GET", "HEAD") and not hmac.compare_digest(
            request.headers.get(TOKEN_HEADER, ""), token
        ):
            return JSONResponse({"error": "missing or wrong token"}, 403)
        response = await call_next(request)
        if query and ok:
            response.set_cookie("slmcnn_token", token, httponly=True, samesite="strict")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        return response

    handled = ((NotFound, 404), (PermissionError, 403), (PhotoChanged, 409), (StoreBusy, 503), (SlmcnnError, 400))
    for error, status in handled:
        app.add_exception_handler(error, lambda request, exc, status=status: JSONResponse({"error": str(exc)}, status))

    def page(request: Request, template: str, **context):
        colours = {c: "#{:02x}{:02x}{:02x}".format(*CLASS_COLOURS[c]) for c in CLASSES}
        shared = {"token": token, "user": config.user, "classes": list(CLASSES), "colours": colours}
        return templates.TemplateResponse(request, template, {**shared, **context})

    def who(body: dict) -> str:
        return str(body.get("who") or config.user or "anonymous")[:80]

    # pages
    @app.get("/", response_class=HTMLResponse)
    def index(request: Request):
        return page(request, "index.html", model=ws.model_path.name)

    @app.get("/sets/{set_id}", response_class=HTMLResponse)
    def set_page(request: Request, set_id: str):
        s = ws.get_set(set_id)
        return page(request, "set.html", set_id=s.id, name=s.name, kind=s.kind)

    @app.get("/sets/{set_id}/layers/{index}", response_class=HTMLResponse)
    def layer_page(request: Request, set_id: str, index: int):
        s = ws.get_set(set_id)
        return page(request, "layer.html", set_id=s.id, name=s.name, index=index, count=s.count())

    @app.get("/sets/{set_id}/camera", response_class=HTMLResponse)
    def camera_page(request: Request, set_id: str):
        s = folder_set(set_id)
        return page(request, "camera.html", set_id=s.id, name=s.name, count=s.count())

    # camera set-up: corners clicked on a raw frame of a folder, good layers picked from it
    def folder_set(set_id: str) -> FolderSet:
        s = ws.get_set(set_id)
        if not isinstance(s, FolderSet):
            raise NotFound(f"{set_id} is a monitored build; set a camera up from a folder of raw frames")
        return s

    @app.get("/api/sets/{set_id}/camera")
    def camera_proposal(set_id: str, index: int = 0):
        return camera_setup.propose(folder_set(set_id), index, ws.camera)

    @app.get("/api/sets/{set_id}/layers/{index}/raw")
    def raw_image(set_id: str, index: int, side: int = camera_setup.SHOWN):
        """A raw frame to click corners on, or (a small `side`) a thumbnail of the good-layer picker."""
        if not 32 <= side <= camera_setup.SHOWN:
            raise SlmcnnError(f"side must be 32..{camera_setup.SHOWN}")
        jpeg, scale = camera_setup.frame_jpeg(folder_set(set_id), index, side)
        return Response(jpeg, media_type="image/jpeg", headers={"X-Scale": f"{scale:.6f}", "Cache-Control": "no-store"})

    @app.post("/api/sets/{set_id}/camera")
    def camera_write(set_id: str, body: dict = BODY):
        index, good, size = body.get("index", 0), body.get("good", []), body.get("size", 768)
        threshold = body.get("error_threshold")
        if not whole_number(index) or not isinstance(good, list) or not whole_number(size):
            raise SlmcnnError("index and size must be whole numbers and good a list of layer indices")
        if threshold is not None and not (isinstance(threshold, int | float) and not isinstance(threshold, bool)):
            raise SlmcnnError("error_threshold must be a number or null")
        corners = camera_setup.corner_list(body.get("corners"))
        folder = folder_set(set_id)
        return camera_setup.write_camera(ws, folder, corners, index, good, size, threshold, bool(body.get("replace")))

    # sets
    @app.get("/api/sets")
    def list_sets():
        return [set_json(s) for s in ws.sets()]

    @app.get("/api/folders")
    def photo_folders():
        """The folders of photos under --data, to pick one to open."""
        return ws.photo_folders()

    @app.post("/api/sets")
    def open_set(body: dict = BODY):
        return set_json(ws.open_folder(str(body.get("folder", ""))))

    def set_json(s) -> dict:
        doc = {
            "id": s.id,
            "kind": s.kind,
            "name": s.name,
            "layers": s.count(),
            "labelled": sum(ws.store.counts(s.key).values()),
        }
        if isinstance(s, BuildSet):
            doc["source"] = Path(s.source.removeprefix("sqlite:///")).name
            seen = s.db.overview(s.build_id)
            reviewed = ws.store.reviews(s.key)
            doc["build"], doc["machine"] = (s.row.name, s.row.machine) if s.row else (s.name, "")
            doc["grades"], doc["last_layer"], doc["live"] = seen.grades, seen.last, s.live(seen.last)
            doc["alerts_open"] = sum(1 for a in s.db.alert_rows(s.build_id) if a.id not in reviewed)
        return doc

    @app.get("/api/sets/{set_id}")
    def set_summary(set_id: str):
        from slmcnn.monitoring.report import error_history

        s = ws.get_set(set_id)
        labelled = ws.store.counts(s.key)
        doc: dict[str, Any] = set_json(s)
        if isinstance(s, BuildSet):
            stored = s.stored()
            grades = s.db.grades(s.build_id)
            doc["layer_list"] = [
                {"index": i, "number": layer.number, "file": layer.file, **{k.lower(): v for k, v in layer.fractions.items()},
                 "labelled": labelled.get(layer.file, 0), "grade": grades.get(layer.number)}
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
            key = (s.key, len(stored), stored[-1].id if stored else None)  # stored layers never change

            def history():
                heat, regions = error_history(s.db, stored)
                return heat.round(4).tolist(), [g.to_json() for g in regions[:30]]

            doc["recurrence"], doc["regions"] = ws.recurrence.get(key, history) if stored else ([], [])
        else:
            doc["layer_list"] = [
                {"index": i, "file": p.name, "labelled": labelled.get(p.name, 0)} for i, p in enumerate(s.files())
            ]
            doc["alerts"], doc["recurrence"], doc["regions"] = [], [], []
        return doc

    # layers
    @app.get("/api/sets/{set_id}/layers/{index}")
    def layer_json(set_id: str, index: int):
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

    @app.get("/api/sets/{set_id}/layers/{index}/image")
    def layer_image(set_id: str, index: int):
        data = ws.layer(set_id, index)
        return Response(ws.jpeg(data), media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})

    @app.get("/api/sets/{set_id}/layers/{index}/explain")
    def explain_tile(set_id: str, index: int, row: int, col: int):
        png, what = ws.explain_tile(ws.layer(set_id, index), row, col)
        headers = {"X-Target": what["target"], "X-Delta": f"{what['delta']:.5f}"}
        return Response(png, media_type="image/png", headers=headers)

    @app.post("/api/sets/{set_id}/layers/{index}/labels")
    def set_labels(set_id: str, index: int, body: dict = BODY):
        """One label ({row, col, cls, checked}) or several ({labels: [...]}); cls null clears."""
        data = ws.layer(set_id, index)
        if data.photo_changed:
            ws.image(data)  # refused: labels must be cut from the photo that was classified
        rows, cols = data.geometry.shape
        items = body.get("labels") if isinstance(body.get("labels"), list) else [body]
        checked_items = []
        for item in items:
            if not isinstance(item, dict):
                raise SlmcnnError("each label is an object {row, col, cls, checked}")
            row, col, cls, checked = item.get("row"), item.get("col"), item.get("cls"), item.get("checked", None)
            if not (whole_number(row) and whole_number(col) and 0 <= row < rows and 0 <= col < cols):
                raise NotFound(f"no tile ({row!r:.20}, {col!r:.20}) in a {rows}x{cols} grid")
            if cls is not None and not (whole_number(cls) and 0 <= cls < len(CLASSES)):
                raise SlmcnnError(f"cls must be null or one of 0..{len(CLASSES) - 1} ({', '.join(CLASSES)})")
            if checked is not None and not isinstance(checked, bool):
                raise SlmcnnError("checked must be true or false")
            checked_items.append((row, col, cls, cls is not None if checked is None else checked))
        for row, col, cls, checked in checked_items:
            ws.store.set_label(data.ref, row, col, cls, checked, who(body))
        return {"stored": len(checked_items)}

    @app.get("/api/sets/{set_id}/proposals")
    def proposals(set_id: str, count: int = 20):
        """The tiles to label next, the most telling first (app.proposals)."""
        if not 1 <= count <= 500:
            raise SlmcnnError("count must be 1..500")
        return [p.to_json() for p in ws.proposals(set_id, count)]

    # review
    def stored_alert(set_id: str, alert_id: int):
        s = ws.get_set(set_id)
        alert = (
            next((a for a in s.db.alert_rows(s.build_id) if a.id == alert_id), None)
            if isinstance(s, BuildSet)
            else None
        )
        if alert is None:
            raise NotFound(f"no alert {alert_id} in {set_id}")
        return s, alert

    @app.post("/api/sets/{set_id}/alerts/{alert_id}")
    def review_alert(set_id: str, alert_id: int, body: dict = BODY):
        """A verdict; a false alarm labels the layer's Error tiles as the class given (`instead`:
        0 Powder, the default, or 1 Object). A second verdict replaces the first, undone first."""
        verdict, instead = body.get("verdict"), body.get("instead", POWDER)
        if verdict not in ("confirmed", "false_alarm"):
            raise SlmcnnError("verdict must be confirmed or false_alarm")
        if instead not in (POWDER, OBJECT) or isinstance(instead, bool):
            raise SlmcnnError(
                f"instead must be {POWDER} (Powder) or {OBJECT} (Object): what the Error tiles really are"
            )
        s, alert = stored_alert(set_id, alert_id)
        previous = ws.store.unreview(s.key, alert_id)
        if previous:
            ws.undo_labels(set_id, alert.layer_id, previous, who(body))
        ws.forget_lessons(s.key, alert_id)
        undo = ws.false_alarm_labels(set_id, alert.layer_id, who(body), instead) if verdict == "false_alarm" else []
        ws.store.review(s.key, alert_id, verdict, who(body), undo)
        # the fine maps learn it without retraining: a false alarm's places as sound, a confirmed defect as an example
        lesson = ws.teach(set_id, s.key, alert, "sound" if verdict == "false_alarm" else "defect")
        return {
            "verdict": verdict, "labelled": len(undo), "instead": CLASSES[instead] if undo else None,
            "lesson": lesson.id if lesson else None, "lessons": str(ws.config.lessons_path),
        }  # fmt: skip

    @app.delete("/api/sets/{set_id}/alerts/{alert_id}")
    def undo_review(set_id: str, alert_id: int, body: dict = BODY):
        """Undo a verdict: the alert is open again and the labels its false alarm wrote are as before."""
        s, alert = stored_alert(set_id, alert_id)
        previous = ws.store.unreview(s.key, alert_id)
        if previous is None:
            raise NotFound(f"alert {alert_id} has no verdict to undo")
        forgotten = ws.forget_lessons(s.key, alert_id)
        return {"restored": ws.undo_labels(set_id, alert.layer_id, previous, who(body)), "lessons_forgotten": forgotten}

    # export and fine-tune
    @app.post("/api/export")
    def export():
        done = export_labels(ws.store, fresh_folder(ws.work, "export"))
        return {
            "folder": str(done.folder),
            "tiles": done.tiles,
            "layers": done.layers,
            "counts": done.counts,
            "replaced": done.replaced,
        }

    @app.get("/api/model")
    def model_info():
        info = ws.model.info
        return {"name": ws.model_path.name, "path": str(ws.model_path), "arch": info.arch, "patch": info.patch,
                "current": str(ws.work / "current.safetensors")}  # fmt: skip

    @app.get("/api/finetune")
    def finetune_state():
        return ws.finetune.state.to_json()

    @app.post("/api/finetune")
    def finetune_start(body: dict = BODY):
        epochs, lr = body.get("epochs", 15), body.get("lr", 3e-4)
        if not (whole_number(epochs) and isinstance(lr, int | float) and not isinstance(lr, bool)):
            raise SlmcnnError("epochs must be a whole number and lr a number")
        if not (1 <= epochs <= 500 and 0 < lr < 1):
            raise SlmcnnError("epochs must be 1..500 and lr in (0, 1)")
        return ws.finetune.start(ws.store, ws.model_path, epochs, lr).to_json()

    @app.post("/api/finetune/current")
    def make_current(body: dict = BODY):
        state = ws.finetune.state
        new = Path(state.run) / "model" / "model.safetensors"
        if state.state != "done" or not new.is_file():
            raise SlmcnnError("no finished fine-tune to make current")
        target = ws.make_current(new, who(body))
        camera = f" --camera {ws.camera_file}" if ws.camera_file else ""
        return {
            "model": str(target),
            "monitor": f"slmcnn monitor ... --model {target}{camera}",
            "camera": ws.camera_note
            or (f"camera profile rebuilt for the new model: {ws.camera_file}" if ws.camera_file else None),
        }

    return app
