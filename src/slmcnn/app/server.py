"""The web app: its guard, its error answers and its routers, one per page (app/routes/). Pages are
Jinja2 templates with plain JavaScript, every asset in the package; the JSON API takes and gives
the Pydantic models of app/models.py. Requests name sets, layers and tiles by id, never by path;
every state-changing request needs the page's token, and a server bound beyond this machine needs
it for every request."""

import hmac
import secrets
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from slmcnn.app.limits import BodyLimit
from slmcnn.app.models import refusal
from slmcnn.app.routes import builds, camera, labels, layers, review
from slmcnn.app.sources import NotFound, PhotoChanged
from slmcnn.app.store import StoreBusy
from slmcnn.app.workspace import AppConfig, Workspace
from slmcnn.constants import __version__
from slmcnn.errors import SlmcnnError

HERE = Path(__file__).parent
TOKEN_HEADER = "x-slmcnn-token"
HANDLED = ((NotFound, 404), (PermissionError, 403), (PhotoChanged, 409), (StoreBusy, 503), (SlmcnnError, 400))
"""Errors a request can cause, each an HTTP status with its one line; a request of the wrong shape is a 400 too."""


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


def host_name(host: str) -> str:
    """The name in a Host header, without its port ([::1]:8765 -> ::1)."""
    return host[1:].partition("]")[0] if host.startswith("[") else host.rpartition(":")[0] or host


def create_app(config: AppConfig, workspace: Workspace | None = None) -> FastAPI:
    """The app for a configuration; `config.token` (made up when not given) guards it."""
    config.token = config.token or secrets.token_urlsafe(24)
    app = FastAPI(title="slmcnn", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.workspace, app.state.token, app.state.config = workspace or Workspace(config), config.token, config
    app.state.templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.add_middleware(BodyLimit)
    guard(app, config.token, remote=not is_loopback(config.host))
    for error, status in HANDLED:
        app.add_exception_handler(error, lambda request, exc, status=status: JSONResponse({"error": str(exc)}, status))
    app.add_exception_handler(RequestValidationError, lambda request, exc: JSONResponse({"error": refusal(exc)}, 400))
    for routes in (builds, layers, labels, review, camera):
        app.include_router(routes.router)
    return app


def guard(app: FastAPI, token: str, remote: bool) -> None:
    """Who gets in: on loopback, requests to 127.0.0.1 and localhost only (no DNS rebinding);
    beyond this machine, only with the token; a state-changing request always with the token header."""

    def given_token(request: Request) -> str:
        return request.headers.get(TOKEN_HEADER) or request.cookies.get("slmcnn_token") or ""

    @app.middleware("http")
    async def check(request: Request, call_next):
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
