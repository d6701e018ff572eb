"""The FastAPI application: ``create_app(settings)``; the model is loaded (and probed)
in the lifespan, before the first request, and released at shutdown."""

from __future__ import annotations

import asyncio
import json
import logging
import pathlib
from contextlib import AsyncExitStack, asynccontextmanager

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute

import rinfer

from . import errors
from .asgi import FastRoute, ServerMiddleware
from .auth import ApiKeys, authorization
from .jobs import JobRunner, open_store
from .metrics import Metrics
from .routers import chat, embeddings, health, jobs, sparse, tei
from .schemas import EmbeddingsRequest, EmbedRequest
from .service import BATCHER_BACKSTOP, Admission, Slots
from .settings import Settings

log = logging.getLogger("rinfer.server")

PROBE = "rinfer readiness probe: the quick brown fox jumps over the lazy dog"


def _probe(model: rinfer.Embedder) -> None:
    """Warms the model up and checks that it embeds correctly and repeatably."""
    a = model.encode([PROBE, "warm-up"])
    b = model.encode(PROBE)
    if not (np.isfinite(a).all() and np.abs(a[0] - b).max() < 1e-5 and np.linalg.norm(b) > 0):
        raise RuntimeError("the model's probe embedding is not finite or not repeatable")


def model_kind(path: str) -> str:
    """`classifier` or `reranker` when the weights have the family's sequence-classification
    head (one output row means a cross-encoder), else `embedder` (rinfer.model_kind)."""
    try:
        return rinfer.model_kind(path)
    except (OSError, rinfer.RinferError):
        return "embedder"  # the loader reports the real problem, naming the file


def _probe_sparse(model: rinfer.Embedder) -> None:
    """Warms a sparse model up and checks its weights are finite and repeatable."""
    idx, val = model.encode_sparse(PROBE)
    idx2, val2 = model.encode_sparse([PROBE, "warm-up"])[0]
    if not (np.isfinite(val).all() and idx.tolist() == idx2.tolist() and np.abs(val - val2).max() < 1e-5):
        raise RuntimeError("the model's probe sparse vector is not finite or not repeatable")


def _probe_generator(model: rinfer.Generator) -> None:
    """Warms a generator up: two greedy tokens of a probe prompt, repeatable."""
    a = model.generate(PROBE, max_tokens=2, ignore_eos=True).tokens
    if a != model.generate(PROBE, max_tokens=2, ignore_eos=True).tokens:
        raise RuntimeError("the model's greedy probe tokens are not repeatable")


def _probe_head(head) -> None:
    if isinstance(head, rinfer.Classifier):
        out = head.logits([PROBE])
    else:
        out = np.array([s for _, s in head.rerank("probe", [PROBE])])
    if not np.isfinite(out).all():
        raise RuntimeError("the model's probe output is not finite")


def folder_pooling(path: str) -> tuple[list[str], bool]:
    """The pooling modes of a sentence-transformers folder, in TEI's words (`cls`,
    `mean`, `max`, `splade`, `last-token`, ...), and whether the pooling includes the
    prompt's tokens. No modules.json: mean pooling, as the engine does."""
    folder = pathlib.Path(path)
    try:
        modules = json.loads((folder / "modules.json").read_text())
    except (OSError, ValueError):
        return ["mean"], True
    for m in modules:
        kind = m.get("type", "").rsplit(".", 1)[-1]
        if kind == "SpladePooling":
            return ["splade"], True
        if kind == "Pooling":
            try:
                cfg = json.loads((folder / m.get("path", "") / "config.json").read_text())
            except (OSError, ValueError):
                return ["mean"], True
            mode = cfg.get("pooling_mode")
            if isinstance(mode, str):
                modes = [mode]
            elif isinstance(mode, list):
                modes = list(mode)
            else:
                flags = {
                    "cls": "pooling_mode_cls_token",
                    "mean": "pooling_mode_mean_tokens",
                    "max": "pooling_mode_max_tokens",
                    "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
                    "weightedmean": "pooling_mode_weightedmean_tokens",
                    "last-token": "pooling_mode_lasttoken",
                }
                modes = [name for name, key in flags.items() if cfg.get(key)]
            modes = ["last-token" if x in ("lasttoken", "last_token") else x for x in modes]
            return modes or ["mean"], bool(cfg.get("include_prompt", True))
    return ["mean"], True


def served_name(settings: Settings) -> str:
    """--served-model-name, else the model folder's name (a Hugging Face cache snapshot
    answers to its repository id)."""
    if settings.served_model_name:
        return settings.served_model_name
    try:
        path = pathlib.Path(settings.model_path or rinfer.default_model_path()).resolve()
    except FileNotFoundError:
        return rinfer.DEFAULT_MODEL
    parts = path.parts
    if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith("models--"):
        return parts[-3][len("models--") :].replace("--", "/")
    return path.name


def model_entries(settings: Settings) -> list[tuple[str, str | None]]:
    """(served name, folder) of every model: the default first (``model_path`` or the
    first of ``models``), then the others of ``models`` (``FOLDER`` or ``NAME=FOLDER``)."""
    entries: list[tuple[str | None, str | None]] = []
    for item in settings.models:
        name, sep, path = item.partition("=")
        entries.append((name, path) if sep and not pathlib.Path(item).exists() else (None, item))
    if settings.model_path is not None:
        entries = [(settings.served_model_name, settings.model_path)] + [
            e for e in entries if e[1] != settings.model_path
        ]
    if not entries:
        entries = [(settings.served_model_name, None)]
    elif entries[0][0] is None:
        entries[0] = (settings.served_model_name, entries[0][1])
    out = []
    for name, path in entries:
        out.append((name or served_name(Settings(model_path=path)), path))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise ValueError(f"two served models have the same name ({', '.join(names)}); name them NAME=FOLDER")
    return out


def _labels(kind: str, model, path: str) -> list[str]:
    if kind == "classifier":
        return list(model.labels)
    try:
        id2label = json.loads((pathlib.Path(path) / "config.json").read_text()).get("id2label") or {}
    except (OSError, ValueError):
        id2label = {}
    return [id2label.get("0", "LABEL_0")]


def _log_ready(s: Settings, kind: str, info: dict) -> None:
    build = rinfer.build_info()
    if info.get("note"):
        log.warning("%s", info["note"])
    quality = info.get("quality")
    if quality:
        log.info(
            "%s quality vs f32 on %d probe texts: min cosine %.6f, mean %.6f",
            info["dtype"],
            quality["probes"],
            quality["min_cosine"],
            quality["mean_cosine"],
        )
    log.info(
        "ready: %s model=%s dim=%d max_len=%d dtype=%s gemm=%s isa=%s threads=%d version=%s",
        kind,
        s.served_model_name,
        info["dim"],
        info["max_seq_length"],
        info["dtype"],
        info["gemm_kernel"],
        build["isa"],
        build["threads"],
        build["version"],
    )


@asynccontextmanager
async def lifespan(app: FastAPI):
    s: Settings = app.state.settings
    path = s.model_path or str(rinfer.default_model_path())
    kind = model_kind(path)
    app.state.model_path = path
    app.state.admission = Admission(s.max_queue)
    log.info("loading %s %s from %s", kind, app.state.served_name, path)
    modes, app.state.include_prompt = folder_pooling(path)
    if s.pooling is not None and kind in ("embedder", "sparse") and s.pooling not in modes:
        raise RuntimeError(
            f"--pooling {s.pooling} disagrees with the model folder {path}, whose pooling is "
            f"{'+'.join(modes)} (set in its modules.json / 1_Pooling/config.json); rinfer serves the "
            "folder's pooling: drop --pooling or give the folder's"
        )
    app.state.pooling = modes
    runner = None
    common = {"threads": s.threads, "dtype": s.dtype, "quality_floor": s.quality_floor}
    if kind == "embedder":
        model = await asyncio.to_thread(
            rinfer.Embedder.load,
            path,
            **common,
            max_batch_tokens=s.max_batch_tokens,
            max_wait_ms=s.max_wait_ms,
            max_queue=s.max_queue * BATCHER_BACKSTOP,  # the limit is app.state.batcher_slots
        )
        await asyncio.to_thread(_probe, model)
        if app.state.jobs_enabled:  # the default model's; the others have no job routes
            app.state.job_store = await asyncio.to_thread(open_store, s.job_store_url)
            runner = app.state.job_runner = JobRunner(app.state.job_store, model, admission=app.state.admission)
            runner.start()
    elif kind == "sparse":
        model = await asyncio.to_thread(rinfer.Embedder.load, path, **common)
        await asyncio.to_thread(_probe_sparse, model)
    elif kind == "generator":
        model = await asyncio.to_thread(
            rinfer.Generator.load, path, threads=s.threads, dtype=s.dtype, kv_cache_dtype=s.kv_cache_dtype
        )
        await asyncio.to_thread(_probe_generator, model)
    else:
        loader = rinfer.Classifier if kind == "classifier" else rinfer.Reranker
        model = await asyncio.to_thread(loader.load, path, **common)
        await asyncio.to_thread(_probe_head, model)
    if kind in ("classifier", "reranker"):
        app.state.labels = _labels(kind, model, path)
    setattr(app.state, kind, model)
    app.state.kind = kind
    _log_ready(s, kind, model.model_info)
    peers = AsyncExitStack()
    try:
        for peer in app.state.peers.values():
            await peers.enter_async_context(peer.router.lifespan_context(peer))
        app.state.ready = True
        yield
    finally:
        app.state.ready = False
        await peers.aclose()
        if runner is not None:
            await runner.stop()
            app.state.job_store.close()
        setattr(app.state, kind, None)
        app.state.admission.close()
        log.info("model released")


def _offline_docs(app: FastAPI) -> None:
    """Swagger UI at /docs and ReDoc at /redoc, from assets shipped in a package
    (`fastapi-offline`), so the docs work with no internet."""

    import fastapi_offline
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    assets = pathlib.Path(fastapi_offline.__file__).parent / "static"
    app.mount("/static/docs", StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title="rinfer API",
            swagger_js_url="/static/docs/swagger-ui-bundle.js",
            swagger_css_url="/static/docs/swagger-ui.css",
            swagger_favicon_url="/static/docs/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc():
        return get_redoc_html(
            openapi_url=app.openapi_url,
            title="rinfer API",
            redoc_js_url="/static/docs/redoc.standalone.js",
            redoc_favicon_url="/static/docs/favicon.png",
            with_google_fonts=False,
        )


def create_app(settings: Settings | None = None, *, _peer: bool = False) -> FastAPI:
    settings = settings or Settings()
    entries = [] if _peer else model_entries(settings)
    if len(entries) > 1 or (entries and settings.models):
        first_name, first_path = entries[0]
        settings = settings.model_copy(update={"model_path": first_path, "served_model_name": first_name, "models": []})
    app = FastAPI(
        title="rinfer",
        version=rinfer.__version__,
        summary="Sentence embeddings served in-process by the rinfer engine",
        lifespan=lifespan,
        docs_url=None,  # served below from local assets: no CDN needed
        redoc_url=None,
    )
    _offline_docs(app)
    app.state.settings = settings
    app.state.ready = False
    app.state.embedder = None
    app.state.classifier = None
    app.state.reranker = None
    app.state.kind = None
    app.state.served_name = served_name(settings)
    # the other models: each a whole app of its own (model, batcher, admission queue),
    # started in this app's lifespan and reached through the middleware's routing
    app.state.peers = {}
    for name, path in entries[1:]:
        peer_settings = settings.model_copy(update={"model_path": path, "served_model_name": name, "models": []})
        app.state.peers[name] = create_app(peer_settings, _peer=True)
    app.state.jobs_enabled = not _peer
    app.state.include_prompt = True
    app.state.pooling = None
    app.state.labels = []
    app.state.model_path = None
    app.state.decoder = None
    app.state.admission = Admission(settings.max_queue)
    app.state.batcher_slots = Slots(settings.max_queue)
    app.state.metrics = Metrics(app)

    fast: dict[str, FastRoute] = {}
    keys = ApiKeys(settings.api_keys)
    app.add_middleware(
        ServerMiddleware,
        metrics=app.state.metrics,
        max_body_bytes=settings.max_body_bytes,
        owner=app,
        fast=fast,
        keys=keys,
    )
    errors.install(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"], allow_headers=["*"]
        )

    async def auth(request: Request) -> None:
        owner = keys.owner(authorization(request.scope))
        if owner is None:
            raise HTTPException(401, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"})
        request.state.key_owner = owner  # the key's SHA-256: background jobs are scoped by it

    # No dependency to resolve on every request when there is no key to check.
    protected = [Depends(auth)] if keys else []
    app.include_router(health.router)
    app.include_router(health.guarded, dependencies=protected)
    app.include_router(embeddings.router, dependencies=protected)
    app.include_router(tei.router, dependencies=protected)
    app.include_router(sparse.router, dependencies=protected)
    if not _peer:
        app.include_router(jobs.router, dependencies=protected)
    app.include_router(embeddings.alias, dependencies=protected)
    app.include_router(embeddings.cohere_v2, dependencies=protected)
    app.include_router(tei.sagemaker, dependencies=protected)
    app.include_router(chat.router, dependencies=protected)
    hot = {
        "/embed": (tei.embed, EmbedRequest),
        "/v1/embeddings": (embeddings.create_embeddings, EmbeddingsRequest),
        "/embeddings": (embeddings.create_embeddings, EmbeddingsRequest),
    }
    for route in [*tei.router.routes, *embeddings.router.routes, *embeddings.alias.routes]:
        if isinstance(route, APIRoute) and route.path in hot and route.endpoint is hot[route.path][0]:
            fast[route.path] = FastRoute(route, hot[route.path][1])
    return app
