"""Liveness, readiness, model information and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import rinfer

from ..service import settings_of

router = APIRouter(tags=["health"])


@router.get("/health", summary="The process is alive")
async def health():
    return {"status": "ok"}


@router.get("/ready", summary="The model is loaded and answered its probe correctly")
async def ready(request: Request):
    if getattr(request.app.state, "ready", False):
        return {"status": "ready"}
    return JSONResponse({"status": "loading"}, status_code=503, headers={"Retry-After": "1"})


@router.get("/info", summary="Model, dimensions, limits, dtype, ISA, threads, version")
async def info(request: Request):
    state = request.app.state
    model = getattr(state, state.kind, None) if state.kind else None
    build = rinfer.build_info()
    out = {"version": rinfer.__version__, "isa": build["isa"], "threads": build["threads"]}
    out["model_id"] = state.served_name
    out["model_type"] = request.app.state.kind
    if model is not None:
        out.update({f"model_{k}": v for k, v in model.model_info.items()})
        out["max_input_length"] = model.model_info["max_seq_length"]
    s = settings_of(request)
    out.update(
        {
            "auto_truncate": s.auto_truncate,
            "max_client_batch_size": s.max_inputs,
            "max_batch_tokens": s.max_batch_tokens,
            "max_concurrent_requests": s.max_queue,
            "pooling": state.pooling,
        }
    )
    return out


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request):
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
