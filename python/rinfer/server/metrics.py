"""Prometheus metrics: requests and latency by route and status, the batcher's
queue depth, batches, texts, tokens and rejections, and the reduced-precision
quality measured at load (read at scrape time). Requests are counted and timed by
the ASGI middleware in ``asgi.py``."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


class BatcherCollector:
    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def collect(self):
        kind = getattr(self.app.state, "kind", None)
        loaded = getattr(self.app.state, kind, None) if kind else None
        if loaded is not None:
            info = loaded.model_info
            quality = info.get("quality") or {"min_cosine": 1.0, "mean_cosine": 1.0}
            for key, doc in [
                ("min_cosine", "lowest cosine to f32 on the probe set (1 for f32)"),
                ("mean_cosine", "mean cosine to f32 on the probe set (1 for f32)"),
            ]:
                g = GaugeMetricFamily(f"rinfer_quality_{key}", doc, labels=["dtype"])
                g.add_metric([info["dtype"]], quality[key])
                yield g
        gen = getattr(self.app.state, "generator", None)
        if gen is not None:
            gs = gen.stats()
            for key, doc in [
                ("active", "sequences generating in the shared batch"),
                ("waiting", "sequences waiting for room in the batch"),
                ("reserved", "KV cache positions reserved by running sequences"),
                ("cache_blocks_total", "KV cache blocks in the pool"),
                ("cache_blocks_in_use", "KV cache blocks holding running sequences' keys and values"),
                ("cache_blocks_reserved", "KV cache blocks reserved by running sequences (in use or to come)"),
            ]:
                g = GaugeMetricFamily(f"rinfer_generation_{key}", doc)
                g.add_metric([], gs[key])
                yield g
            for key, doc in [
                ("generated", "tokens generated"),
                ("steps", "decoder steps run"),
                ("refused", "sequences refused because the batch and its queue were full"),
            ]:
                c = CounterMetricFamily(f"rinfer_generation_{key}", doc)
                c.add_metric([], gs[key])
                yield c
        model = getattr(self.app.state, "embedder", None)
        stats = dict(model.batcher_stats()) if model is not None else {}
        admission = getattr(self.app.state, "admission", None)
        side = admission.stats() if admission is not None else {}
        for key in ("queued", "rejected"):
            stats[key] = stats.get(key, 0) + side.get(key, 0)
        slots = getattr(self.app.state, "batcher_slots", None)
        stats["rejected"] += slots.rejected if slots is not None else 0
        g = GaugeMetricFamily("rinfer_queue_depth", "requests waiting in the batcher or the engine queue")
        g.add_metric([], stats.get("queued", 0))
        yield g
        c = CounterMetricFamily("rinfer_engine_calls", "engine calls outside the batcher (ids, rerank, predict, ...)")
        c.add_metric([], side.get("runs", 0))
        yield c
        c = CounterMetricFamily("rinfer_dropped", "queued work dropped unrun (deadline passed or client gone)")
        c.add_metric([], stats.get("dropped", 0) + side.get("dropped", 0))
        yield c
        for key, doc in [
            ("batches", "engine batches run"),
            ("texts", "texts embedded through the batcher"),
            ("tokens", "tokens embedded through the batcher (no padding)"),
            ("rejected", "requests refused because the queue was full"),
        ]:
            c = CounterMetricFamily(f"rinfer_batcher_{key}", doc)
            c.add_metric([], stats.get(key, 0))
            yield c


class Metrics:
    def __init__(self, app: FastAPI) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("rinfer_http_requests", "HTTP requests", ["route", "status"], registry=self.registry)
        self.latency = Histogram(
            "rinfer_http_request_seconds",
            "HTTP request latency",
            ["route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.batch_texts = Histogram(
            "rinfer_request_texts",
            "texts per request",
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 512),
        )
        self.ttft = Histogram(
            "rinfer_time_to_first_token_seconds",
            "time from a generation request to its first token",
            registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.itl = Histogram(
            "rinfer_inter_token_seconds",
            "time between consecutive streamed tokens",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
        )
        self.expired = Counter("rinfer_expired_requests", "requests past their deadline", registry=self.registry)
        self.disconnected = Counter(
            "rinfer_disconnected_requests", "requests whose client went away first", registry=self.registry
        )
        self.registry.register(BatcherCollector(app))
