"""rinfer's HTTP server (the same FastAPI app as ``rinfer serve``) as a Ray Serve
deployment: one model per replica, each replica a Ray actor with ``threads`` CPUs,
a fixed number of replicas or Serve's autoscaling, and every response naming the
replica that answered in the ``X-Rinfer-Replica`` header (the replica's Ray actor
name, in the ``serve`` namespace).

Run it with Ray's own tools (Ray is not a dependency of rinfer: ``pip install -r
requirements-ray.txt``)::

    RINFER_MODEL=/models/all-MiniLM-L6-v2 RINFER_THREADS=1 RINFER_RAY_REPLICAS=2 \\
        serve run rinfer.serve_ray:app

or from a Serve config file (``serve run config.yaml``, or a KubeRay RayService's
``serveConfigV2``), where ``build_app`` takes its arguments::

    applications:
      - name: rinfer
        route_prefix: /
        import_path: rinfer.serve_ray:build_app
        args: {model: /models/all-MiniLM-L6-v2, threads: 1, min_replicas: 1, max_replicas: 4}

Arguments (``build_app``) and their environment variables (``app``):

* ``model`` (``RINFER_MODEL`` or ``RINFER_MODEL_PATH``): the model folder, as seen by
  every node;
* ``threads`` (``RINFER_THREADS``, default 1): compute threads of a replica, and the
  CPUs Ray reserves for it (``ray_actor_options={"num_cpus": threads}``);
* ``replicas`` (``RINFER_RAY_REPLICAS``, default 1): a fixed number of replicas, or
  ``min_replicas``/``max_replicas``/``target_ongoing_requests``
  (``RINFER_RAY_MIN_REPLICAS``, ``RINFER_RAY_MAX_REPLICAS``,
  ``RINFER_RAY_TARGET_ONGOING``, default 32) for Serve's autoscaling;
* every other ``rinfer serve`` setting, by its ``RINFER_*`` variable or by name.
  ``max_queue`` (1024) is also each replica's ``max_ongoing_requests``: Serve sends a
  replica no more requests than its batcher would accept, and holds the rest.

Background jobs need a store made for several replicas (``RINFER_JOB_STORE_URL=
postgresql://``): the default SQLite file serves one process (replicas on other nodes
would not see its jobs, and replicas sharing the file could run a job twice)."""

from __future__ import annotations

import logging
import os
from typing import Any

from ray import serve

from rinfer.server import Settings, create_app

log = logging.getLogger("rinfer.serve_ray")

REPLICA_HEADER = "X-Rinfer-Replica"
DEPLOYMENT = "rinfer"


class ReplicaHeader:
    """Pure ASGI middleware: adds the replica's id to every HTTP response."""

    def __init__(self, app, replica: str) -> None:
        self.app = app
        self.header = (REPLICA_HEADER.lower().encode(), replica.encode())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_header(message):
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        return await self.app(scope, receive, send_with_header)


@serve.ingress()
class RinferReplica:
    """One replica: the server's app with its model, batcher and admission queue."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self._settings = settings
        self._app = None

    def __serve_build_asgi_app__(self):
        # built here, in the replica's process: the model is loaded by the app's lifespan
        app = create_app(Settings(**self._settings))
        replica = serve.get_replica_context().replica_id.to_full_id_str()
        app.add_middleware(ReplicaHeader, replica=replica)  # outermost: on every response
        self._app = app
        return app

    def check_health(self) -> None:
        """Serve's periodic health check: the model answered its probe and is loaded."""
        if self._app is not None and not getattr(self._app.state, "ready", False):
            raise RuntimeError("rinfer replica not ready")


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def deployment_options(settings: Settings, args: dict[str, Any]) -> dict[str, Any]:
    """Serve's options for the deployment: CPUs per replica, replicas or autoscaling,
    and max_ongoing_requests matched to the batcher's queue."""
    threads = settings.threads or 1
    options: dict[str, Any] = {
        "name": args.get("name", DEPLOYMENT),
        "ray_actor_options": {"num_cpus": threads},
        "max_ongoing_requests": settings.max_queue,
        "health_check_period_s": 5,
        "graceful_shutdown_timeout_s": settings.request_timeout_s,
    }
    lo = args.get("min_replicas", _env_int("RINFER_RAY_MIN_REPLICAS"))
    hi = args.get("max_replicas", _env_int("RINFER_RAY_MAX_REPLICAS"))
    if lo is not None or hi is not None:
        options["autoscaling_config"] = {
            "min_replicas": lo if lo is not None else 1,
            "max_replicas": hi if hi is not None else max(lo or 1, 1),
            "target_ongoing_requests": args.get("target_ongoing_requests", _env_int("RINFER_RAY_TARGET_ONGOING") or 32),
        }
    else:
        options["num_replicas"] = args.get("replicas", _env_int("RINFER_RAY_REPLICAS") or 1)
    return options


SERVE_ARGS = ("name", "replicas", "min_replicas", "max_replicas", "target_ongoing_requests")


def build_app(args: dict[str, Any] | None = None):
    """The Serve application (``serve run rinfer.serve_ray:build_app model=... threads=2``,
    or ``args`` of a config file); unset settings come from the ``RINFER_*`` environment."""
    args = dict(args or {})
    overrides = {k: v for k, v in args.items() if k not in SERVE_ARGS}
    if "model" in overrides:
        overrides["model_path"] = overrides.pop("model")
    elif "model_path" not in overrides and os.environ.get("RINFER_MODEL"):
        overrides["model_path"] = os.environ["RINFER_MODEL"]
    settings = Settings(**overrides)
    if settings.model_path is None and not settings.models:
        import rinfer

        settings = settings.model_copy(update={"model_path": str(rinfer.default_model_path())})
    # one value for every replica, whatever their environment: threads fixed, so the engine
    # uses exactly the CPUs Ray reserved for it
    settings = settings.model_copy(update={"threads": settings.threads or 1})
    options = deployment_options(settings, args)
    if settings.job_store_url.startswith("sqlite") and options.get("num_replicas", 2) != 1:
        log.warning(
            "background jobs: the SQLite job store serves one process, not %s replicas; "
            "set RINFER_JOB_STORE_URL=postgresql://... to share one queue",
            options.get("num_replicas", "autoscaled"),
        )
    return serve.deployment(RinferReplica).options(**options).bind(settings.model_dump())


def __getattr__(name: str):
    # `rinfer.serve_ray:app`, built from the environment when Serve imports it
    if name == "app":
        return build_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
