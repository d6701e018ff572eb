"""Liveness, readiness, model information and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import rinfer

from ..service import settings_of

router = APIRouter(tags=["health"])
# Behind the API key when one is set: what the model is, and the metrics.
guarded = APIRouter(tags=["health"])


@router.get("/health", summary="The process is alive")
@router.get("/ping", summary="As /health (SageMaker's health check)")
async def health():
    return {"status": "ok"}


@router.get("/ready", summary="The model is loaded and answered its probe correctly")
async def ready(request: Request):
    if getattr(request.app.state, "ready", False):
        return {"status": "ready"}
    return JSONResponse({"status": "loading"}, status_code=503, headers={"Retry-After": "1"})


def tei_model_type(kind: str | None, pooling: list[str] | None, labels: list[str]) -> dict:
    """TEI's ``model_type``: ``{"embedding": {"pooling"}}`` (sparse models too, as
    TEI's splade pooling), ``{"classifier" | "reranker": {"id2label", "label2id"}}``."""
    if kind in ("classifier", "reranker"):
        return {
            kind: {
                "id2label": {str(i): x for i, x in enumerate(labels)},
                "label2id": {x: i for i, x in enumerate(labels)},
            }
        }
    return {"embedding": {"pooling": "+".join(pooling or ["mean"])}}


@guarded.get("/info", summary="TEI's model and router information, and rinfer's own (dim, dtype, ISA, threads)")
async def info(request: Request):
    state = request.app.state
    model = getattr(state, state.kind, None) if state.kind else None
    build = rinfer.build_info()
    s = settings_of(request)
    model_info = model.model_info if model is not None else {}
    out = {
        # TEI's Info
        "model_id": state.served_name,
        "model_sha": None,
        "model_dtype": model_info.get("dtype", s.dtype),
        "served_model_name": state.served_name,
        "model_type": tei_model_type(state.kind, state.pooling, state.labels),
        "max_concurrent_requests": s.max_queue,
        "max_input_length": model_info.get("max_seq_length", 0),
        "max_batch_tokens": s.max_batch_tokens,
        "max_batch_requests": None,
        "max_client_batch_size": s.max_inputs,
        "auto_truncate": s.auto_truncate,
        "tokenization_workers": 1,
        "version": rinfer.__version__,
        "sha": None,
        "docker_label": None,
        # rinfer's
        "kind": state.kind,
        "isa": build["isa"],
        "threads": build["threads"],
        "pooling": state.pooling,
    }
    # No filesystem path leaves the server.
    out.update({f"model_{k}": v for k, v in model_info.items() if f"model_{k}" not in out and k != "path"})
    return out


@guarded.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request):
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
