"""One pure ASGI middleware for what every request needs: a request id (taken from
``X-Request-ID`` or made, put in ``request.state`` and on the response), the body
limit (413 from ``Content-Length`` before the body is read) and the Prometheus
request counter and latency histogram. Pure ASGI, not ``BaseHTTPMiddleware``: no
extra task, stream or response copy per request."""

from __future__ import annotations

import os
import time

import orjson

from .metrics import Metrics

_RID = b"x-request-id"


class ServerMiddleware:
    def __init__(self, app, *, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

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
                await self._too_large(send_with_id, rid_s, int(length))
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - start)

    async def _too_large(self, send, rid: str, length: int) -> None:
        body = orjson.dumps(
            {
                "error": {
                    "type": "body_too_large",
                    "message": f"body of {length} bytes exceeds {self.max_body_bytes}",
                    "request_id": rid,
                }
            }
        )
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
