"""One place that maps errors to HTTP, in the dialect of the route that failed:

- TEI's routes (``/embed``, ``/rerank``, ``/predict``, ...) answer TEI's flat
  ``{"error": str, "error_type": "Validation" | "Tokenizer" | "Empty" | "Overloaded" |
  "Backend" | "Unhealthy"}``;
- OpenAI's routes (``/v1/*``) answer ``{"error": {"message", "type", "param", "code"}}``;
- the others (``/health``, ``/info``, ...) rinfer's own
  ``{"error": {"type", "message", "request_id"}}``.

Every error response carries ``X-Request-ID`` (set by ``asgi.ServerMiddleware``);
overload and not-ready answers carry ``Retry-After``. Statuses follow TEI: 400 an
empty batch, 413 a body or batch too large, 422 a request that does not validate or
an input too long, 424 a route the loaded model cannot serve, 429 overloaded."""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

import rinfer

log = logging.getLogger("rinfer.server")

# TEI's routes; everything under /v1/ (and its /embeddings alias) speaks OpenAI's dialect.
TEI_PATHS = frozenset(
    {
        "/embed",
        "/embed_all",
        "/embed_sparse",
        "/predict",
        "/rerank",
        "/similarity",
        "/tokenize",
        "/decode",
        "/invocations",
        "/",
    }
)

# kind -> TEI error_type
_TEI_TYPE = {
    "validation": "Validation",
    "too_long": "Validation",
    "too_many": "Validation",
    "payload_too_large": "Validation",
    "not_found": "Validation",
    "unauthorized": "Validation",
    "conflict": "Validation",
    "tokenizer": "Tokenizer",
    "empty": "Empty",
    "overloaded": "Overloaded",
    "deadline": "Overloaded",
    "wrong_model": "Backend",
    "internal": "Backend",
    "unhealthy": "Unhealthy",
}

# kind -> OpenAI (type, code)
_OPENAI_TYPE = {
    "validation": ("invalid_request_error", None),
    "too_long": ("invalid_request_error", "context_length_exceeded"),
    "too_many": ("invalid_request_error", "too_many_inputs"),
    "payload_too_large": ("invalid_request_error", "payload_too_large"),
    "tokenizer": ("invalid_request_error", None),
    "empty": ("invalid_request_error", "empty_input"),
    "not_found": ("invalid_request_error", None),
    "unauthorized": ("invalid_request_error", "invalid_api_key"),
    "conflict": ("invalid_request_error", "conflict"),
    "overloaded": ("requests", "rate_limit_exceeded"),
    "deadline": ("server_error", "deadline_exceeded"),
    "wrong_model": ("invalid_request_error", "model_not_supported"),
    "internal": ("server_error", None),
    "unhealthy": ("server_error", "model_not_ready"),
}

_STATUS_KIND = {
    400: "empty",
    401: "unauthorized",
    404: "not_found",
    409: "conflict",
    413: "payload_too_large",
    424: "wrong_model",
    429: "overloaded",
    503: "unhealthy",
}


class ApiError(Exception):
    """An error answered in the route's dialect: `kind` is one of the keys above."""

    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message
        self.param, self.code, self.headers = param, code, headers or {}


class WrongModelError(ApiError):
    """The loaded model is not of the kind the route needs (TEI answers 424)."""

    def __init__(self, message: str) -> None:
        super().__init__(424, "wrong_model", message)


def request_id(request: Request) -> str:
    return getattr(request.state, "request_id", "-")


def dialect(path: str) -> str:
    if path.startswith(("/v1/", "/v2/")) or path == "/embeddings":
        return "openai"
    return "tei" if path in TEI_PATHS else "native"


def render(path: str, rid: str, err: ApiError) -> tuple[bytes, dict[str, str]]:
    """The body and headers of `err` as the route at `path` answers it."""
    which = dialect(path)
    if which == "tei":
        body = {"error": err.message, "error_type": _TEI_TYPE.get(err.kind, "Validation")}
    elif which == "openai":
        kind, code = _OPENAI_TYPE.get(err.kind, ("invalid_request_error", None))
        body = {"error": {"message": err.message, "type": kind, "param": err.param, "code": err.code or code}}
    else:
        body = {"error": {"type": err.kind, "message": err.message, "request_id": rid}}
    headers = {"X-Request-ID": rid, **err.headers}
    if err.status in (429, 503):
        headers.setdefault("Retry-After", "1")
    return orjson.dumps(body), headers


def error_response(request: Request, err: ApiError) -> Response:
    body, headers = render(request.url.path, request_id(request), err)
    return Response(body, status_code=err.status, headers=headers, media_type="application/json")


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    parts = []
    param = None
    for e in exc.errors():
        loc = [str(x) for x in e["loc"] if x != "body"]
        where = ".".join(loc)
        if param is None and loc:
            param = loc[0]
        if e["type"] == "extra_forbidden":
            parts.append(f"unknown field `{where}`")
        elif e["type"] == "json_invalid":
            parts.append(f"the body is not valid JSON: {e.get('ctx', {}).get('error', e['msg'])}")
        else:
            parts.append(f"{where}: {e['msg']}" if where else e["msg"])
    # pydantic reports every member of a union; the first few say enough.
    text = "; ".join(dict.fromkeys(parts[:4]))
    return text or "the request does not match the schema", param


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, exc: RequestValidationError):
        message, param = _validation_message(exc)
        return error_response(request, ApiError(422, "validation", message, param=param))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        status = exc.status_code
        kind = _STATUS_KIND.get(status, "validation" if status < 500 else "internal")
        return error_response(request, ApiError(status, kind, str(exc.detail), headers=dict(exc.headers or {})))

    @app.exception_handler(rinfer.InputTooLongError)
    async def too_long(request: Request, exc: Exception):
        return error_response(request, ApiError(422, "too_long", str(exc), param="input"))

    @app.exception_handler(rinfer.InvalidInputError)
    async def invalid(request: Request, exc: Exception):
        return error_response(request, ApiError(422, "validation", str(exc)))

    @app.exception_handler(rinfer.OverloadedError)
    async def overloaded(request: Request, exc: Exception):
        return error_response(request, ApiError(429, "overloaded", f"Model is overloaded: {exc}"))

    @app.exception_handler(rinfer.UnsupportedError)
    async def unsupported(request: Request, exc: Exception):
        return error_response(request, ApiError(422, "validation", str(exc)))

    @app.exception_handler(TimeoutError)
    async def timeout(request: Request, exc: Exception):
        return error_response(
            request, ApiError(503, "deadline", "the request's deadline passed before it ran; retry later")
        )

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception):
        log.exception("internal error, request %s %s %s", request_id(request), request.method, request.url.path)
        return error_response(request, ApiError(500, "internal", "internal error; the request id is in the log"))
