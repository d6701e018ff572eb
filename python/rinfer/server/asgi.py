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
import time

import orjson
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request

from .auth import ApiKeys
from .errors import ApiError, render
from .metrics import Metrics

_RID = b"x-request-id"


class FastRoute:
    """A route served without FastAPI's per-request machinery (see the module doc)."""

    def __init__(self, route, model: type[BaseModel]) -> None:
        self.route = route  # the APIRoute: its path labels the metrics
        self.model = model
        self.endpoint = route.endpoint


# routes whose body's `model` picks the model when several are served
_BY_BODY = frozenset({"/v1/embeddings", "/embeddings", "/v1/rerank", "/v2/rerank"})


async def _read_body(receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


class BodyTooLarge(HTTPException):
    """The body passed the limit while it streamed in (chunked, or longer than it
    declared). An HTTPException, so FastAPI's body reader lets it through as the
    413 it is."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body exceeds {limit} bytes")


def _limited(receive, limit: int):
    """`receive` that counts body bytes and raises :class:`BodyTooLarge` as soon
    as they pass `limit`, whatever `Content-Length` said (or without one)."""
    seen = 0

    async def counted():
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return counted


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
        keys: ApiKeys | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.owner = owner  # the FastAPI app, for its exception handlers
        self.fast = fast or {}
        self.keys = keys if keys else None  # None: no key to check

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

        receive = _limited(receive, self.max_body_bytes)
        try:
            peers = self.owner.state.peers if self.owner is not None else None
            if length.isdigit() and int(length) > self.max_body_bytes:
                await self._too_large(send_with_id, scope["path"], rid_s, int(length))
            elif peers and (routed := await self._route(peers, scope, receive, send_with_id, rid_s, rid_b))[0]:
                pass  # answered by another model's app, or 404
            elif length and scope["method"] == "POST" and scope["path"] in self.fast:
                await self._fast(self.fast[scope["path"]], scope, routed[1] if peers else receive, send_with_id)
            else:
                await self.app(scope, routed[1] if peers else receive, send_with_id)
        except BodyTooLarge as exc:
            if status != 500:
                raise  # the response had started: nothing else can be said
            await self._error(send_with_id, scope["path"], rid_s, ApiError(413, "payload_too_large", exc.detail))
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - start)

    async def _route(self, peers: dict, scope, receive, send, rid: str, rid_b: bytes):
        """Several models: ``/models/{name}/...`` goes to that model's app (the path
        without the prefix), as do ``/v1/embeddings``, ``/embeddings`` and
        ``/v1/rerank`` whose body names another model (unknown: 404). Returns
        (answered, receive to use: the body replayed when it was read)."""
        path = scope["path"]
        default = self.owner.state.served_name
        if path.startswith("/models/"):
            tail = path[len("/models/") :]
            for name in [default, *peers]:
                if tail.startswith(name + "/"):
                    rest = tail[len(name) :]
                    if name == default:
                        scope["path"], scope["raw_path"] = rest, rest.encode()
                        return False, receive
                    await peers[name](self._peer_scope(scope, rest, rid_b), receive, send)
                    return True, receive
            names = ", ".join([default, *peers])
            err = ApiError(404, "not_found", f"no served model in {path}; they are {names}")
            await self._error(send, "/" + path.rsplit("/", 1)[1], rid, err)  # in the dialect of the route named last
            return True, receive
        if scope["method"] != "POST" or path not in _BY_BODY:
            return False, receive
        body = await _read_body(receive)
        if body is None:
            return True, receive  # the client left
        replay = _replay(body, receive)
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return False, replay  # the route answers 422
        name = parsed.get("model") if isinstance(parsed, dict) else None
        if not isinstance(name, str) or name == default:
            return False, replay
        if name in peers:
            await peers[name](self._peer_scope(scope, path, rid_b), replay, send)
            return True, replay
        err = ApiError(404, "not_found", f"The model `{name}` does not exist", param="model", code="model_not_found")
        await self._error(send, path, rid, err)
        return True, replay

    @staticmethod
    def _peer_scope(scope, path: str, rid_b: bytes) -> dict:
        headers = [(k, v) for k, v in scope["headers"] if k != _RID] + [(_RID, rid_b)]
        return {**scope, "path": path, "raw_path": path.encode(), "headers": headers}

    async def _too_large(self, send, path: str, rid: str, length: int) -> None:
        await self._error(
            send, path, rid, ApiError(413, "payload_too_large", f"body of {length} bytes exceeds {self.max_body_bytes}")
        )

    async def _error(self, send, path: str, rid: str, err: ApiError) -> None:
        body, extra = render(path, rid, err)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in extra.items() if k.lower() != "x-request-id"]
        await send({"type": "http.response.start", "status": err.status, "headers": headers})
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
        return self.keys is None or self.keys.owner(auth) is not None

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
