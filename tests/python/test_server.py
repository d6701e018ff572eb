"""The HTTP server through its lifespan (TestClient), and the official OpenAI client."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import rinfer
from fastapi.testclient import TestClient
from rinfer.server import Settings, create_app


@pytest.fixture(scope="module")
def client(model_dir):
    app = create_app(Settings(model_path=str(model_dir), max_inputs=64, max_body_bytes=64 * 1024))
    with TestClient(app) as c:
        yield c


def test_health_ready_info(client):
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").status_code == 200
    info = client.get("/info").json()
    assert info["model_dim"] == 384 and info["max_input_length"] == 256
    assert info["version"] == rinfer.__version__ and info["isa"] and info["threads"] >= 1


def test_not_ready_before_lifespan(model_dir):
    app = create_app(Settings(model_path=str(model_dir)))
    c = TestClient(app)  # no `with`: the lifespan has not run
    r = c.get("/ready")
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert c.post("/embed", json={"inputs": "x"}).status_code == 503


def test_openai_embeddings_float_and_base64(client, golden):
    texts = golden["texts"][:5]
    r = client.post("/v1/embeddings", json={"input": texts, "model": "m"})
    assert r.status_code == 200, r.text
    body = r.json()
    got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    np.testing.assert_allclose(got, golden["vectors"][:5], atol=1e-4)
    assert body["usage"]["prompt_tokens"] == sum(len(x) for x in golden["ids"][:5])
    assert body["model"] == "all-MiniLM-L6-v2" and r.headers["X-Request-ID"]  # the served name, not the request's
    r = client.post("/v1/embeddings", json={"input": texts[1], "encoding_format": "base64", "dimensions": 64})
    v = np.frombuffer(base64.b64decode(r.json()["data"][0]["embedding"]), dtype="<f4")
    assert v.shape == (64,) and abs(np.linalg.norm(v) - 1) < 1e-5
    r = client.post("/v1/embeddings", json={"input": golden["ids"][:2]})
    got = np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)
    np.testing.assert_allclose(got, golden["vectors"][:2], atol=1e-4)


def test_official_openai_client_works_unchanged(client, golden):
    import openai  # in the test lock: missing is a failure, not a skip

    oc = openai.OpenAI(api_key="unused", base_url="http://testserver/v1", http_client=client)
    resp = oc.embeddings.create(model="all-MiniLM-L6-v2", input=golden["texts"][:3])
    got = np.array([d.embedding for d in resp.data], dtype=np.float32)
    np.testing.assert_allclose(got, golden["vectors"][:3], atol=1e-4)
    assert [m.id for m in oc.models.list()] == ["all-MiniLM-L6-v2"]


def test_tei_routes(client, golden):
    r = client.post("/embed", json={"inputs": golden["texts"][:3]})
    np.testing.assert_allclose(np.array(r.json(), dtype=np.float32), golden["vectors"][:3], atol=1e-4)
    r = client.post("/tokenize", json={"inputs": golden["texts"][4]})
    assert [t["id"] for t in r.json()[0]] == golden["ids"][4]
    r = client.post("/tokenize", json={"inputs": ["Hello world", "cats"]})
    first = r.json()[0]
    assert first[0] == {"id": 101, "text": "[CLS]", "special": True, "start": None, "stop": None}
    assert [(t["text"], t["start"], t["stop"]) for t in first[1:3]] == [("hello", 0, 5), ("world", 6, 11)]
    r = client.post("/tokenize", json={"inputs": "Hello", "add_special_tokens": False})
    assert [t["text"] for t in r.json()[0]] == ["hello"]
    r = client.post(
        "/similarity", json={"inputs": {"source_sentence": "A cat.", "sentences": ["A cat.", "Stock prices fell."]}}
    )
    sims = r.json()
    assert abs(sims[0] - 1) < 1e-5 and sims[1] < 0.5
    for path, body in [("/rerank", {"query": "q", "texts": ["a"]}), ("/predict", {"inputs": "x"})]:
        r = client.post(path, json=body)  # TEI: 424 when the model is of another kind
        assert r.status_code == 424 and r.json()["error_type"] == "Backend"
        assert "the loaded model is a embedder" in r.json()["error"]


def test_bad_requests(client):
    r = client.post("/embed", json={"inputs": 3})
    assert r.status_code == 422 and r.headers["X-Request-ID"]
    assert set(r.json()) == {"error", "error_type"} and r.json()["error_type"] == "Validation"
    assert "inputs" in r.json()["error"]
    r = client.post("/embed", json={"inputs": "word " * 400, "truncate": False})
    assert r.status_code == 422 and r.json()["error_type"] == "Validation"
    assert client.post("/embed", json={"inputs": "word " * 400, "truncate": True}).status_code == 200
    r = client.post("/embed", json={"inputs": ["x"] * 65})
    assert r.status_code == 413 and r.json()["error_type"] == "Validation"
    r = client.post("/embed", json={"inputs": []})
    assert r.status_code == 400 and r.json() == {"error": "`inputs` cannot be empty", "error_type": "Empty"}
    r = client.post("/embed", content=b"x" * (65 * 1024), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert client.post("/v1/embeddings", json={"input": [[101, 10**9, 102]]}).status_code == 422
    assert client.post("/embed", json={"inputs": "x"}, headers={"X-Request-Timeout": "nope"}).status_code == 422
    assert client.post("/embed", json={"inputs": "x", "dimensions": 999}).status_code == 422


def test_metrics_count_requests_and_batches(client):
    client.post("/embed", json={"inputs": ["a", "b"]})
    text = client.get("/metrics").text
    assert 'rinfer_http_requests_total{route="/embed",status="200"}' in text
    assert "rinfer_batcher_batches_total" in text and "rinfer_queue_depth" in text


def test_api_key(model_dir):
    app = create_app(Settings(model_path=str(model_dir), api_key="s3cret"))
    with TestClient(app) as c:
        assert c.post("/embed", json={"inputs": "x"}).status_code == 401
        ok = c.post("/embed", json={"inputs": "x"}, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert c.get("/health").status_code == 200


def test_cli_help_explains_every_flag():
    from rinfer.cli import build_parser

    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices
    for name in ("serve", "embed", "bench"):
        for action in sub[name]._actions:
            assert action.help, f"{name} {action.option_strings} has no help"


def test_docs_work_offline(client):
    page = client.get("/docs").text
    assert "/static/docs/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        assert client.get(f"/static/docs/{asset}").status_code == 200
    page = client.get("/redoc").text
    assert "/static/docs/redoc.standalone.js" in page and "http" not in page.replace("http-equiv", "")
    spec = client.get("/openapi.json").json()
    assert {"/v1/embeddings", "/embed", "/v1/jobs", "/health", "/metrics"} <= set(spec["paths"])


class _FakeRequest:
    """Just enough of a Starlette request for the service layer: its ASGI `receive`
    answers `http.disconnect` after `disconnect_after_s` (or never)."""

    def __init__(self, app, disconnect_after_s: float | None) -> None:
        self.app = app
        self.headers = {}
        self._after = disconnect_after_s

    async def receive(self) -> dict:
        import asyncio

        if self._after is None:
            await asyncio.Event().wait()
        await asyncio.sleep(self._after)
        return {"type": "http.disconnect"}


def test_disconnected_and_late_requests_are_dropped_unrun(model_dir):
    import asyncio

    from fastapi import HTTPException
    from rinfer.server.service import embed_texts

    app = create_app(Settings(model_path=str(model_dir), max_wait_ms=400.0, request_timeout_s=0.1))

    async def main():
        model = rinfer.Embedder.load(model_dir, max_wait_ms=400.0)
        app.state.embedder, app.state.kind, app.state.ready = model, "embedder", True
        with pytest.raises(HTTPException) as e:
            await embed_texts(_FakeRequest(app, 0.01), ["client leaves"], normalize=None, truncate=True)
        assert e.value.status_code == 499
        with pytest.raises(TimeoutError):
            await embed_texts(_FakeRequest(app, None), ["too slow"], normalize=None, truncate=True)
        await asyncio.sleep(0.8)  # let the batcher reach both requests
        return model.batcher_stats()

    stats = asyncio.run(main())
    assert stats["dropped"] == 2 and stats["texts"] == 0, stats


def test_classifier_and_reranker_models_are_served(tiny_dir):
    import json

    g = json.loads((tiny_dir / "classifier/golden.json").read_text())
    with TestClient(create_app(Settings(model_path=str(tiny_dir / "classifier")))) as c:
        info = c.get("/info").json()
        assert info["kind"] == "classifier" and set(info["model_type"]) == {"classifier"}
        r = c.post("/predict", json={"inputs": [[t] for t in g["texts"][:2]], "raw_scores": True})
        assert r.status_code == 200, r.text
        for row, want in zip(r.json(), g["logits"][:2]):
            got = {x["label"]: x["score"] for x in row}
            for label, w in zip(g["labels"], want):
                assert abs(got[label] - w) < 1e-4
        one = c.post("/predict", json={"inputs": g["texts"][0]}).json()
        assert abs(sum(x["score"] for x in one) - 1) < 1e-5 and one[0]["score"] >= one[-1]["score"]
        r = c.post("/embed", json={"inputs": "x"})
        assert r.status_code == 424 and "classifier" in r.json()["error"]
        assert c.post("/rerank", json={"query": "q", "texts": ["a"]}).status_code == 424
    g = json.loads((tiny_dir / "reranker/golden.json").read_text())
    with TestClient(create_app(Settings(model_path=str(tiny_dir / "reranker")))) as c:
        r = c.post("/rerank", json={"query": g["query"], "texts": g["texts"], "raw_scores": True, "return_text": True})
        assert r.status_code == 200, r.text
        ranked = r.json()
        want = sorted(range(len(g["texts"])), key=lambda i: -g["logits"][i][0])
        assert [x["index"] for x in ranked] == want
        for x in ranked:
            assert abs(x["score"] - g["logits"][x["index"]][0]) < 1e-3 and x["text"] == g["texts"][x["index"]]
        assert c.post("/predict", json={"inputs": "x"}).status_code == 424  # a cross-encoder scores pairs


def test_json_log_lines():
    import json
    import logging

    from rinfer.cli import JsonFormatter

    rec = logging.LogRecord("rinfer.server", logging.INFO, __file__, 1, "ready: %s", ("x",), None)
    out = json.loads(JsonFormatter().format(rec))
    assert out["message"] == "ready: x" and out["level"] == "INFO" and out["logger"] == "rinfer.server"


def test_bugs_answer_500_with_request_id(model_dir):
    app = create_app(Settings(model_path=str(model_dir)))

    @app.get("/boom")
    async def boom():
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/boom", headers={"X-Request-ID": "abc123"})
        assert r.status_code == 500 and r.json()["error"]["request_id"] == "abc123"
        assert "a bug" not in r.text


def test_body_limit_request_id_and_metrics_in_one_asgi_middleware(client):
    from starlette.middleware.base import BaseHTTPMiddleware

    app = client.app
    assert not any(m.cls is BaseHTTPMiddleware for m in app.user_middleware)
    r = client.post(
        "/embed", content=b"x" * (65 * 1024), headers={"content-type": "application/json", "X-Request-ID": "big1"}
    )
    assert r.status_code == 413 and r.headers["X-Request-ID"] == "big1"
    assert r.json() == {"error": f"body of {65 * 1024} bytes exceeds {64 * 1024}", "error_type": "Validation"}
    r = client.post("/embed", json={"inputs": "x"}, headers={"X-Request-ID": "mine"})
    assert r.status_code == 200 and r.headers.get_list("X-Request-ID") == ["mine"]
    made = client.post("/embed", json={"inputs": "x"}).headers["X-Request-ID"]
    assert len(made) == 32 and made != client.post("/embed", json={"inputs": "x"}).headers["X-Request-ID"]
    r = client.post("/embed", json={"inputs": 3}, headers={"X-Request-ID": "bad1"})
    assert r.headers.get_list("X-Request-ID") == ["bad1"] and r.json()["error_type"] == "Validation"
    text = client.get("/metrics").text
    assert 'rinfer_http_requests_total{route="unmatched",status="413"}' in text
    assert 'rinfer_http_requests_total{route="/embed",status="422"}' in text
    assert 'rinfer_http_request_seconds_count{route="/embed"}' in text


def test_openai_usage_comes_from_the_engine_without_a_second_tokenisation(model_dir, monkeypatch):
    app = create_app(Settings(model_path=str(model_dir)))
    with TestClient(app) as c:
        model = app.state.embedder
        want = sum(len(ids) for ids in model.tokenize(["one text", "and a second, longer text"]))

        def refuse(*a, **k):
            raise AssertionError("the route tokenised a second time")

        monkeypatch.setattr(type(model), "tokenize", refuse, raising=False)
        r = c.post("/v1/embeddings", json={"input": ["one text", "and a second, longer text"]})
        assert r.status_code == 200, r.text
        assert r.json()["usage"] == {"prompt_tokens": want, "total_tokens": want}


def test_hot_routes_skip_fastapi_machinery_but_keep_its_answers(model_dir, golden, monkeypatch):
    """POST /embed and /v1/embeddings run their route function straight from the ASGI
    middleware; bodies that do not validate, wrong keys and other content types still
    get FastAPI's own answers, and a bug in the fast path is still a 500 with the id."""
    import fastapi.routing
    from rinfer.server import asgi

    calls = []
    real = fastapi.routing.run_endpoint_function

    async def counting(**kw):
        calls.append(kw)
        return await real(**kw)

    monkeypatch.setattr(fastapi.routing, "run_endpoint_function", counting)
    app = create_app(Settings(model_path=str(model_dir), api_key="k"))
    auth = {"Authorization": "Bearer k"}
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/embed", json={"inputs": golden["texts"][:2]}, headers=auth)
        assert r.status_code == 200 and np.abs(np.array(r.json()) - golden["vectors"][:2]).max() < 1e-4
        r = c.post("/v1/embeddings", json={"input": golden["texts"][0]}, headers=auth)
        assert r.status_code == 200 and r.json()["usage"]["total_tokens"] == len(golden["ids"][0])
        assert calls == []  # FastAPI's endpoint runner was not involved
        r = c.post("/embed", json={"inputs": 3}, headers=auth)
        assert r.status_code == 422 and r.json()["error_type"] == "Validation"
        assert c.post("/embed", json={"inputs": "x"}, headers={"Authorization": "Bearer nope"}).status_code == 401
        r = c.post("/embed", content=b'{"inputs": "x"}', headers={**auth, "content-type": "text/plain"})
        assert r.status_code == 422  # what FastAPI answers to a body that is not JSON
        r = c.post("/embed", json={"inputs": "x", "trunc": True}, headers=auth)
        assert r.status_code == 422 and "unknown field `trunc`" in r.json()["error"]
        assert c.get("/metrics", headers=auth).status_code == 200 and len(calls) == 1  # other routes: FastAPI

        async def boom(body, request):
            raise RuntimeError("a bug")

        monkeypatch.setattr(asgi.FastRoute, "__init__", _boom_route(asgi.FastRoute.__init__, boom))
        with TestClient(create_app(Settings(model_path=str(model_dir))), raise_server_exceptions=False) as c2:
            r = c2.post("/embed", json={"inputs": "x"}, headers={"X-Request-ID": "bug1"})
            assert r.status_code == 500 and r.headers["X-Request-ID"] == "bug1" and "a bug" not in r.text
            assert r.json() == {"error": "internal error; the request id is in the log", "error_type": "Backend"}
            text = c2.get("/metrics").text
            assert 'rinfer_http_requests_total{route="/embed",status="500"}' in text


def _boom_route(init, boom):
    def patched(self, route, model):
        init(self, route, model)
        self.endpoint = boom

    return patched
