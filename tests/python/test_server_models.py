"""Several models in one server: `--model` repeated (or RINFER_MODELS), each model
with its own batcher and admission queue, routed by the request's `model` on /v1/*
and by /models/{name}/... elsewhere; the first answers unprefixed routes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rinfer
from fastapi.testclient import TestClient
from rinfer.server import Settings, create_app


@pytest.fixture(scope="module")
def served(model_dir):
    import pathlib

    tiny = pathlib.Path(__file__).resolve().parents[2] / "tests/data/models"
    settings = Settings(models=[str(model_dir), f"ranker={tiny / 'reranker'}", str(tiny / "gelu-mean")])
    with TestClient(create_app(settings)) as c:
        yield c, tiny


def test_models_are_listed_with_their_kinds(served, model_dir):
    c, _ = served
    cards = c.get("/v1/models").json()["data"]
    assert [(m["id"], m["kind"]) for m in cards] == [
        (model_dir.name, "embedder"),
        ("ranker", "reranker"),
        ("gelu-mean", "embedder"),
    ]
    assert c.get("/v1/models/ranker").json()["kind"] == "reranker"
    assert c.get("/v1/models/nope").status_code == 404


def test_v1_routes_follow_the_requests_model(served, golden):
    c, tiny = served
    texts = golden["texts"][:3]
    r = c.post("/v1/embeddings", json={"input": texts, "model": "gelu-mean"})
    assert r.status_code == 200, r.text and r.json()["model"] == "gelu-mean"
    want = rinfer.Embedder.load(tiny / "gelu-mean").encode(texts)
    np.testing.assert_allclose(np.array([d["embedding"] for d in r.json()["data"]]), want, atol=1e-5)
    for body in [{"input": texts}, {"input": texts, "model": served[0].get("/v1/models").json()["data"][0]["id"]}]:
        r = c.post("/v1/embeddings", json=body)
        np.testing.assert_allclose(
            np.array([d["embedding"] for d in r.json()["data"]]), golden["vectors"][:3], atol=1e-4
        )
    r = c.post("/embeddings", json={"input": "x", "model": "gelu-mean"})
    assert r.json()["model"] == "gelu-mean"
    r = c.post("/v1/embeddings", json={"input": "x", "model": "text-embedding-3-small"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found" and r.json()["error"]["param"] == "model"
    g = json.loads((tiny / "reranker/golden.json").read_text())
    r = c.post("/v1/rerank", json={"query": g["query"], "documents": g["texts"], "model": "ranker"})
    assert r.status_code == 200 and r.json()["model"] == "ranker"
    assert c.post("/v1/rerank", json={"query": "q", "documents": ["a"]}).status_code == 424  # the default embeds


def test_tei_routes_follow_the_path_prefix(served, golden, model_dir):
    c, tiny = served
    g = json.loads((tiny / "reranker/golden.json").read_text())
    body = {"query": g["query"], "texts": g["texts"], "raw_scores": True}
    r = c.post("/models/ranker/rerank", json=body)
    assert r.status_code == 200, r.text
    for x in r.json():
        assert abs(x["score"] - g["logits"][x["index"]][0]) < 1e-3
    assert c.post("/rerank", json=body).status_code == 424  # unprefixed: the default model
    assert set(c.get("/models/ranker/info").json()["model_type"]) == {"reranker"}
    a = c.post("/models/gelu-mean/embed", json={"inputs": "hello"}).json()
    want = rinfer.Embedder.load(tiny / "gelu-mean").encode(["hello"], normalize=True)
    np.testing.assert_allclose(np.array(a), want, atol=1e-5)
    same = c.post(f"/models/{model_dir.name}/embed", json={"inputs": golden["texts"][0]}).json()
    np.testing.assert_allclose(same[0], golden["vectors"][0], atol=1e-4)
    r = c.post("/models/nope/embed", json={"inputs": "x"})
    assert r.status_code == 404 and set(r.json()) == {"error", "error_type"}
    r = c.post("/models/ranker/embed", json={"inputs": "x"})
    assert r.status_code == 424 and r.json()["error_type"] == "Backend"


def test_each_model_has_its_own_queue(served):
    c, _ = served
    app = c.app
    peers = app.state.peers
    assert set(peers) == {"ranker", "gelu-mean"}
    queues = {id(app.state.admission), *(id(p.state.admission) for p in peers.values())}
    assert len(queues) == 3
    assert app.state.embedder is not peers["gelu-mean"].state.embedder


def test_one_model_keeps_answering_any_model_name(model_dir):
    with TestClient(create_app(Settings(model_path=str(model_dir)))) as c:
        assert c.app.state.peers == {}
        r = c.post("/v1/embeddings", json={"input": "x", "model": "text-embedding-3-small"})
        assert r.status_code == 200 and r.json()["model"] == model_dir.name


def test_models_from_the_environment_and_the_cli(monkeypatch, model_dir, tiny_dir):
    from rinfer import cli
    from rinfer.server.app import model_entries

    monkeypatch.setenv("RINFER_MODELS", f"{model_dir}, ranker={tiny_dir / 'reranker'}")
    s = Settings()
    assert s.models == [str(model_dir), f"ranker={tiny_dir / 'reranker'}"]
    assert [n for n, _ in model_entries(s)] == [model_dir.name, "ranker"]
    monkeypatch.delenv("RINFER_MODELS")
    seen = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: seen.setdefault("app", app))
    cli.main(["serve", "--model", str(model_dir), "--model", f"ranker={tiny_dir / 'reranker'}"])
    s = seen["app"].state.settings
    assert s.model_path == str(model_dir) and list(seen["app"].state.peers) == ["ranker"]
    with pytest.raises(ValueError, match="same name"):
        create_app(Settings(models=[str(model_dir), str(model_dir)]))
