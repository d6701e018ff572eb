"""rinfer.serve_ray on a real local Ray cluster (127.0.0.1, 2 CPUs): two replicas of one
CPU each answer the official openai client, each naming itself in X-Rinfer-Replica;
one replica is killed by its actor handle under load and no request is lost or wrong
(retried by the client onto the other replica, or failed with a clean HTTP error);
Serve replaces it; the cluster is shut down. Runs in the Ray virtualenv that
scripts/test_services.sh makes (Ray is not in .venv)."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections import Counter

import numpy as np
import pytest

if not os.environ.get("RINFER_SERVICE_TESTS"):
    pytest.skip(
        "needs Ray Serve: run by scripts/test_services.sh (or set RINFER_SERVICE_TESTS=1)", allow_module_level=True
    )
ray = pytest.importorskip(
    "ray", reason="Ray is not installed (pip install -r requirements-ray.txt; scripts/test_services.sh does)"
)
openai = pytest.importorskip("openai", reason="the openai client is not installed")
from ray import serve
from rinfer.serve_ray import REPLICA_HEADER, build_app, deployment_options
from rinfer.server import Settings

MODEL = "all-MiniLM-L6-v2"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_deployment_options_follow_the_settings():
    s = Settings(threads=3, max_queue=64)
    fixed = deployment_options(s, {"replicas": 4})
    assert fixed["ray_actor_options"] == {"num_cpus": 3}
    assert fixed["num_replicas"] == 4 and fixed["max_ongoing_requests"] == 64
    auto = deployment_options(s, {"min_replicas": 1, "max_replicas": 5, "target_ongoing_requests": 16})
    assert "num_replicas" not in auto
    assert auto["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 5, "target_ongoing_requests": 16}


def test_app_is_importable_from_the_environment(monkeypatch, model_dir):
    import rinfer.serve_ray

    monkeypatch.setenv("RINFER_MODEL", str(model_dir))
    monkeypatch.setenv("RINFER_RAY_REPLICAS", "2")
    app = rinfer.serve_ray.app  # what `serve run rinfer.serve_ray:app` imports
    assert isinstance(app, serve.Application)


@pytest.fixture(scope="module")
def cluster(model_dir):
    tmp = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths must stay under 108 bytes
    t0 = time.time()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=tmp,
        _node_ip_address="127.0.0.1",
        logging_level="WARNING",
        log_to_driver=False,
    )
    try:
        port = _free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(
            build_app({"model": str(model_dir), "threads": 1, "replicas": 2, "max_queue": 256}),
            name="rinfer",
            route_prefix="/",
        )
        base = f"http://127.0.0.1:{port}"
        print(f"\nRay + Serve + 2 replicas up in {time.time() - t0:.1f}s")
        t_route = time.time()
        _wait_until_routed_to_both(base)
        print(f"the ingress routes to both replicas after {time.time() - t_route:.1f}s more")
        yield base
    finally:
        t1 = time.time()
        serve.shutdown()
        ray.shutdown()
        print(f"\ncluster shut down in {time.time() - t1:.1f}s")
        shutil.rmtree(tmp, ignore_errors=True)


def _client(base: str):
    return openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=3, timeout=60)


def _embed(client, text: str):
    raw = client.embeddings.with_raw_response.create(model=MODEL, input=text)
    return raw.headers.get(REPLICA_HEADER), np.array(raw.parse().data[0].embedding, np.float32)


def _wait_until_routed_to_both(base: str, timeout: float = 60.0) -> None:
    """Serve reports a replica RUNNING before its ingress routes to it: the HAProxy ingress
    reloads its backend list asynchronously, so the first requests after serve.run() may
    all reach the replica it knew first. Wait (bounded) until bursts reach both."""
    import httpx

    end = time.time() + timeout
    seen: set[str] = set()
    while len(seen) < 2:
        assert time.time() < end, f"after {timeout}s the ingress still routes only to {seen}"
        for _ in range(8):  # a new connection each: a balancer may pin a kept-alive one
            r = httpx.get(f"{base}/health", timeout=10)
            if r.status_code == 200 and r.headers.get(REPLICA_HEADER):
                seen.add(r.headers[REPLICA_HEADER])
        if len(seen) < 2:
            time.sleep(0.5)


def _replicas_running() -> int:
    app = serve.status().applications["rinfer"]
    return app.deployments["rinfer"].replica_states.get("RUNNING", 0)


def test_requests_spread_over_both_replicas(cluster, embedder):
    client = _client(cluster)
    texts = [f"spread text number {i}" for i in range(24)]
    want = embedder.encode(texts)
    seen: list[tuple[str, int]] = []
    lock = threading.Lock()

    def one(i):
        rid, vec = _embed(client, texts[i])
        np.testing.assert_allclose(vec, want[i], atol=1e-5)
        with lock:
            seen.append((rid, i))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == len(texts)
    by = Counter(r for r, _ in seen)
    print(f"\nreplicas: {dict(by)}")
    assert len(by) == 2 and all(r and r.startswith("SERVE_REPLICA::rinfer#rinfer#") for r in by)
    # every route answers with the header, not only the OpenAI ones
    import httpx

    r = httpx.get(f"{cluster}/health", timeout=10)
    assert r.status_code == 200 and r.headers[REPLICA_HEADER] in by


def test_a_replica_killed_under_load_loses_nothing(cluster, embedder):
    client = _client(cluster)
    texts = [f"load text {i}: {'more words ' * (i % 5)}" for i in range(64)]
    want = embedder.encode(texts)
    stop = threading.Event()
    outcomes: list[tuple[str, str, float]] = []  # (kind, replica or error, time)
    lock = threading.Lock()

    def worker(k):
        i = k
        while not stop.is_set():
            t = time.time()
            try:
                rid, vec = _embed(client, texts[i % len(texts)])
            except (openai.APIStatusError, openai.APIConnectionError) as exc:  # a clean failure
                with lock:
                    outcomes.append(("error", type(exc).__name__, t))
            else:
                ok = np.abs(vec - want[i % len(texts)]).max() < 1e-5
                with lock:
                    outcomes.append(("ok" if ok else "WRONG", rid, t))
            i += 8

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    time.sleep(3)
    with lock:
        before = Counter(r for kind, r, _ in outcomes if kind == "ok")
    assert len(before) == 2, f"load did not reach both replicas: {before}"
    victim = min(before)
    handle = ray.get_actor(victim, namespace="serve")
    t_kill = time.time()
    ray.kill(handle, no_restart=True)  # mid-load: requests in flight on it die with it
    time.sleep(4)
    stop.set()
    for t in threads:
        t.join(120)
        assert not t.is_alive(), "a request hung"
    kinds = Counter(kind for kind, _, _ in outcomes)
    after = Counter(r for kind, r, t in outcomes if kind == "ok" and t > t_kill + 0.5)
    print(f"\noutcomes: {dict(kinds)}; answered after the kill by: {dict(after)}")
    assert kinds["WRONG"] == 0
    # every request either succeeded (the client retried it onto the other replica) or failed
    # cleanly; at most the requests in flight on the killed replica may fail
    assert kinds["error"] <= 8, outcomes
    assert kinds["ok"] > 50
    assert victim not in after and sum(after.values()) > 0
    # Serve replaces the killed replica; then both answer again
    end = time.time() + 90
    while _replicas_running() < 2:
        assert time.time() < end, serve.status()
        time.sleep(0.5)
    rids = {_embed(client, f"after {i}")[0] for i in range(20)}
    assert victim not in rids and len(rids) >= 1
