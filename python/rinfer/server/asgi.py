"""One pure ASGI middleware for what every request needs: a request id (taken from
``X-Request-ID`` or made, put in ``request.state`` and on the response), the body
limit (413 from ``Content-Length`` before the body is read) and the Prometheus
request counter and latency histogram. Pure ASGI, not ``BaseHTTPMiddleware``: no
extra task, stream or response copy per request.

It also dispatches the hot routes (``POST /embed``, ``/v1/embeddings``) directly:
the body is validated by the route's own pydantic model (``model_validate_json``,
parsed in Rust) and the route's own function runs, with the app's exception
handlers; anything else (a body that does not validate, a wrong API key, another
content type) goes through FastAPI as usual, with the body replayed, so errors
and OpenAPI stay FastAPI's. This skips FastAPI's per-request routing, dependency
solving and double JSON parsing, about half of a short request's Python time."""

from __future__ import annotations

import os
import secrets
import time

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from .errors import ApiError, render
from .metrics import Metrics

_RID = b"x-request-id"


class FastRoute:
    """A route served without FastAPI's per-request machinery (see the module doc)."""

    def __init__(self, route, model: type[BaseModel]) -> None:
        self.route = route  # the APIRoute: its path labels the metrics
        self.model = model
        self.endpoint = route.endpoint


def _replay(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class ServerMiddleware:
    def __init__(
        self,
        app,
        *,
        metrics: Metrics,
        max_body_bytes: int,
        owner=None,
        fast: dict[str, FastRoute] | None = None,
        api_key: str | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.owner = owner  # the FastAPI app, for its exception handlers
        self.fast = fast or {}
        self.auth = f"Bearer {api_key}".encode() if api_key is not None else None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        rid = b""
        length = b""
        for k, v in scope["headers"]:
            if k == _RID:
                rid = v
            elif k == b"content-length":
                length = v
        rid_s = rid.decode("latin-1") if rid else os.urandom(16).hex()
        rid_b = rid or rid_s.encode()
        scope.setdefault("state", {})["request_id"] = rid_s
        status = 500

        async def send_with_id(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.setdefault("headers", [])
                if not isinstance(headers, list):
                    headers = message["headers"] = list(headers)
                headers[:] = [(k, v) for k, v in headers if k.lower() != _RID]
                headers.append((_RID, rid_b))
            await send(message)

        try:
            if length.isdigit() and int(length) > self.max_body_bytes:
                await self._too_large(send_with_id, scope["path"], rid_s, int(length))
            elif length and scope["method"] == "POST" and scope["path"] in self.fast:
                await self._fast(self.fast[scope["path"]], scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - start)

    async def _too_large(self, send, path: str, rid: str, length: int) -> None:
        err = ApiError(413, "payload_too_large", f"body of {length} bytes exceeds {self.max_body_bytes}")
        body, extra = render(path, rid, err)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in extra.items() if k.lower() != "x-request-id"]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _direct(self, scope) -> bool:
        """Whether the fast path may serve this request (else FastAPI does)."""
        ctype = auth = b""
        for k, v in scope["headers"]:
            if k == b"content-type":
                ctype = v
            elif k == b"authorization":
                auth = v
        if b"json" not in ctype:
            return False
        return self.auth is None or secrets.compare_digest(auth, self.auth)

    async def _fast(self, fast: FastRoute, scope, receive, send) -> None:
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before sending its body
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        parsed = None
        if self._direct(scope):
            try:
                parsed = fast.model.model_validate_json(body)
            except ValidationError:
                pass  # FastAPI answers 422 in its own words
        if parsed is None:
            await self.app(scope, _replay(body, receive), send)
            return
        scope["route"] = fast.route
        request = Request(scope, receive)
        try:
            response = await fast.endpoint(parsed, request)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise  # a bug: the server-error middleware answers 500
            response = await handler(request, exc)
        await response(scope, receive, send)

    def _handler(self, exc: Exception):
        handlers = self.owner.exception_handlers if self.owner is not None else {}
        for cls in type(exc).__mro__:
            if cls is Exception:
                return None
            if cls in handlers:
                return handlers[cls]
        return None
