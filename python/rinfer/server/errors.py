"""One place that maps engine errors to HTTP; errors carry the request id (set by
``asgi.ServerMiddleware``)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import rinfer

log = logging.getLogger("rinfer.server")


def request_id(request: Request) -> str:
    return getattr(request.state, "request_id", "-")


def error_body(request: Request, status: int, kind: str, message: str, **extra) -> JSONResponse:
    body = {"error": {"type": kind, "message": message, "request_id": request_id(request), **extra}}
    headers = {"X-Request-ID": request_id(request)}
    if status in (429, 503):
        headers["Retry-After"] = "1"
    return JSONResponse(body, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, exc: RequestValidationError):
        details = [{"loc": list(e["loc"]), "type": e["type"], "msg": e["msg"]} for e in exc.errors()]
        return error_body(request, 422, "validation_error", "request does not match the schema", detail=details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        resp = error_body(request, exc.status_code, "http_error", str(exc.detail))
        for k, v in (exc.headers or {}).items():
            resp.headers[k] = v
        return resp

    @app.exception_handler(rinfer.InputTooLongError)
    async def too_long(request: Request, exc: Exception):
        return error_body(request, 413, "input_too_long", str(exc))

    @app.exception_handler(rinfer.InvalidInputError)
    async def invalid(request: Request, exc: Exception):
        return error_body(request, 422, "invalid_input", str(exc))

    @app.exception_handler(rinfer.OverloadedError)
    async def overloaded(request: Request, exc: Exception):
        return error_body(request, 503, "overloaded", str(exc))

    @app.exception_handler(rinfer.UnsupportedError)
    async def unsupported(request: Request, exc: Exception):
        return error_body(request, 400, "unsupported", str(exc))

    @app.exception_handler(TimeoutError)
    async def timeout(request: Request, exc: Exception):
        return error_body(request, 503, "deadline_exceeded", "the request's deadline passed before it ran")

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception):
        log.exception("internal error, request %s %s %s", request_id(request), request.method, request.url.path)
        return error_body(request, 500, "internal_error", "internal error; the request id is in the log")
