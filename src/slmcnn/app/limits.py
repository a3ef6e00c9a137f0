"""The most one request to the app may carry. The app's largest request, the labels of one layer,
is well under a megabyte; without a bound, a 90 MB body kept a worker busy for minutes and cost
the server about a gigabyte."""

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY = 8 * 1024 * 1024  # bytes


class BodyLimit:
    """Refuse a request whose body is over `limit` bytes with 413: at once when its Content-Length
    says so, else as soon as the body read so far passes the limit (a chunked upload)."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        said = dict(scope["headers"]).get(b"content-length", b"0")
        if not said.isdigit() or int(said) > self.limit:
            await JSONResponse({"error": self.refusal()}, 413)(scope, receive, send)
            return
        read = 0

        async def bounded() -> Message:
            nonlocal read
            message = await receive()
            read += len(message.get("body", b""))
            if read > self.limit:
                raise HTTPException(413, self.refusal())
            return message

        await self.app(scope, bounded, send)

    def refusal(self) -> str:
        return f"the request is larger than the app takes ({self.limit // (1024 * 1024)} MB)"
