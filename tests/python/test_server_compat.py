"""TEI's and OpenAI's HTTP contracts: error bodies and statuses, unknown fields, 429 on
overload, TEI's /embed, /predict and /rerank options, served model names, Cohere-style
rerank, one admission queue for every engine call, and TEI's launcher flags."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor

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


def _tiny(name: str):
    import pathlib

    return pathlib.Path(__file__).resolve().parents[2] / "tests/data/models" / name


# --- 1. error bodies and statuses --------------------------------------------------


def test_tei_errors_are_flat_with_teis_types_and_statuses(client):
    cases = [
        ({"inputs": 3}, 422, "Validation"),
        ({"inputs": "x", "normalise": True}, 422, "Validation"),  # unknown field
        ({"inputs": "word " * 400, "truncate": False}, 422, "Validation"),  # too long
        ({"inputs": ["x"] * 65}, 413, "Validation"),  # batch over --max-client-batch-size
        ({"inputs": []}, 400, "Empty"),
    ]
    for body, status, kind in cases:
        r = client.post("/embed", json=body)
        assert r.status_code == status, (body, r.text)
        assert set(r.json()) == {"error", "error_type"} and r.json()["error_type"] == kind
        assert isinstance(r.json()["error"], str) and r.headers["X-Request-ID"]
    r = client.post("/embed", json={"inputs": "x", "normalise": True})
    assert r.json()["error"] == "unknown field `normalise`"
    r = client.post("/embed", content=b"x" * (65 * 1024), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error_type"] == "Validation"
    for path, body in [
        ("/rerank", {"query": "q", "texts": ["a"]}),
        ("/predict", {"inputs": "x"}),
        ("/embed_sparse", {"inputs": "x"}),
    ]:
        r = client.post(path, json=body)
        assert r.status_code == 424 and r.json()["error_type"] == "Backend", r.text
    for path, body in [
        ("/rerank", {"query": "q", "texts": ["a"], "extra": 1}),
        ("/predict", {"inputs": "x", "extra": 1}),
        ("/tokenize", {"inputs": "x", "extra": 1}),
        ("/similarity", {"inputs": {"source_sentence": "a", "sentences": ["b"], "extra": 1}}),
        ("/embed_sparse", {"inputs": "x", "extra": 1}),
    ]:
        r = client.post(path, json=body)
        assert r.status_code == 422 and r.json()["error_type"] == "Validation", (path, r.text)
        assert "unknown field" in r.json()["error"]


def test_openai_errors_have_openais_shape(client):
    r = client.post("/v1/embeddings", json={"input": "x", "temperature": 0})
    assert r.status_code == 422
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error" and err["param"] == "temperature"
    assert "unknown field `temperature`" in err["message"]
    r = client.post("/v1/embeddings", json={"input": 3})
    assert r.status_code == 422 and r.json()["error"]["param"] == "input"
    r = client.post("/v1/embeddings", json={"input": "word " * 10, "dimensions": 999})
    assert r.status_code == 422 and r.json()["error"]["param"] == "dimensions"
    r = client.post("/v1/embeddings", content=b"x" * (65 * 1024), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    r = client.get("/v1/models/text-embedding-3-small")
    assert r.status_code == 404
    assert r.json() == {
        "error": {
            "message": "The model `text-embedding-3-small` does not exist",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }


def test_rinfers_own_routes_keep_their_error_shape(client):
    r = client.get("/v1/jobs/nope")  # /v1: OpenAI's shape
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"
    r = client.get("/no-such-route", headers={"X-Request-ID": "r1"})
    assert r.status_code == 404 and r.json()["error"]["request_id"] == "r1"


def test_overload_is_429_with_retry_after_on_every_route(tiny_dir):
    with TestClient(create_app(Settings(model_path=str(tiny_dir / "reranker")))) as c:
        c.app.state.admission.max_queue = 0  # every engine call finds the queue full
        r = c.post("/rerank", json={"query": "q", "texts": ["a", "b"]})
        assert r.status_code == 429 and r.headers["Retry-After"] == "1"
        assert r.json()["error_type"] == "Overloaded" and r.json()["error"].startswith("Model is overloaded")
        r = c.post("/predict", json={"inputs": ["q", "a"]})
        assert r.status_code == 429 and r.json()["error_type"] == "Overloaded"
        r = c.post("/v1/rerank", json={"query": "q", "documents": ["a"]})
        assert r.status_code == 429 and r.headers["Retry-After"] == "1"
        assert r.json()["error"]["type"] == "requests" and r.json()["error"]["code"] == "rate_limit_exceeded"
        assert c.app.state.admission.rejected == 3
        assert "rinfer_batcher_rejected_total 3.0" in c.get("/metrics").text


def test_batcher_overload_is_429(model_dir):
    """Two requests at once against a queue of one that waits 1 s for company: the
    second is refused at once with TEI's 429."""
    app = create_app(Settings(model_path=str(model_dir), max_queue=1, max_wait_ms=1000.0))
    with TestClient(app) as c, ThreadPoolExecutor(2) as pool:
        first = pool.submit(c.post, "/embed", json={"inputs": "first"})
        for _ in range(200):
            if app.state.embedder.batcher_stats()["queued"]:
                break
            threading.Event().wait(0.005)
        second = c.post("/embed", json={"inputs": "second"})
        assert second.status_code == 429, second.text
        assert second.json()["error_type"] == "Overloaded" and second.headers["Retry-After"] == "1"
        r = c.post("/v1/embeddings", json={"input": "third"})
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
        assert first.result().status_code == 200


# --- 2. /embed: truncate, truncation_direction, prompt_name, dimensions -----------


def test_embed_truncates_by_default_as_tei_does(client, model_dir):
    long = "word " * 400
    assert client.post("/embed", json={"inputs": long}).status_code == 200  # --auto-truncate defaults to true
    assert client.post("/embed", json={"inputs": long, "truncate": None}).status_code == 200
    assert client.post("/embed", json={"inputs": long, "truncate": False}).status_code == 422
    with TestClient(create_app(Settings(model_path=str(model_dir), auto_truncate=False))) as c:
        r = c.post("/embed", json={"inputs": long})
        assert r.status_code == 422 and r.json()["error_type"] == "Validation"
        assert c.post("/embed", json={"inputs": long, "truncate": True}).status_code == 200
        assert c.get("/info").json()["auto_truncate"] is False


def test_embed_truncation_direction_left_keeps_the_end(client, embedder, model_dir):
    """What TEI's tokenizer gives for Left: [CLS] + the last 254 word pieces + [SEP]
    (WordPiece splits word by word, so the pieces of the whole text are those of its
    parts; checked against Hugging Face tokenizers' own left truncation too, for
    WordPiece, Unigram and byte-level BPE folders)."""
    unit, tail = "alpha beta, gamma! ", "the quick brown fox jumps over the lazy dog, unbelievably"
    text = unit * 80 + tail
    limit = embedder.max_seq_length
    pieces = [embedder.tokenize([x])[0].tolist()[1:-1] for x in (unit, tail)]
    content = pieces[0] * 80 + pieces[1]
    assert len(content) > limit
    ids = [101, *content[len(content) - limit + 2 :], 102]
    want_left = embedder.encode_ids([ids], normalize=True)[0]
    want_right = embedder.encode([text], normalize=True)[0]
    for direction in ("Left", "left"):
        r = client.post("/embed", json={"inputs": [text], "truncation_direction": direction})
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(np.array(r.json()[0], dtype=np.float32), want_left, atol=1e-5)
    r = client.post("/embed", json={"inputs": [text], "truncation_direction": "Right"})
    np.testing.assert_allclose(np.array(r.json()[0], dtype=np.float32), want_right, atol=1e-5)
    assert np.abs(want_left - want_right).max() > 1e-2  # the two ends differ
    short = ["a short text", "another"]
    left = client.post("/embed", json={"inputs": short, "truncation_direction": "Left"}).json()
    right = client.post("/embed", json={"inputs": short}).json()
    np.testing.assert_allclose(np.array(left), np.array(right), atol=1e-5)
    r = client.post("/embed", json={"inputs": [text], "truncation_direction": "Left", "truncate": False})
    assert r.status_code == 422  # too long and not to be truncated
    r = client.post("/embed", json={"inputs": "x", "truncation_direction": "Middle"})
    assert r.status_code == 422 and "truncation_direction" in r.json()["error"]


def _prompted_folder(tmp_path, include_prompt: bool):
    import shutil

    src = _tiny_st("st-dense-prompts")
    dst = tmp_path / f"prompts-{include_prompt}"
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "1_Pooling/config.json").read_text())
    cfg["include_prompt"] = include_prompt
    (dst / "1_Pooling/config.json").write_text(json.dumps(cfg))
    return dst


def _tiny_st(name: str):
    import pathlib

    return pathlib.Path(__file__).resolve().parents[2] / "tests/data/st" / name


@pytest.mark.parametrize("include_prompt", [True, False])
def test_embed_prompt_name_as_sentence_transformers(tmp_path, include_prompt):
    folder = _prompted_folder(tmp_path, include_prompt)
    model = rinfer.Embedder.load(folder)
    texts = ["what is a cat?", "where do foxes live"]
    with TestClient(create_app(Settings(model_path=str(folder)))) as c:
        for name in ("query", "doc"):
            r = c.post("/embed", json={"inputs": texts, "prompt_name": name})
            assert r.status_code == 200, r.text
            want = model.encode(texts, prompt_name=name, normalize=True)
            np.testing.assert_allclose(np.array(r.json(), dtype=np.float32), want, atol=1e-5)
        # no prompt_name: no prompt (TEI), not the model's default prompt
        r = c.post("/embed", json={"inputs": texts})
        np.testing.assert_allclose(np.array(r.json()), model.encode(texts, prompt="", normalize=True), atol=1e-5)
        r = c.post("/embed", json={"inputs": texts, "prompt_name": "nope"})
        assert r.status_code == 422 and "prompt_name `nope`" in r.json()["error"]
        r = c.post("/similarity", json={"inputs": {"source_sentence": "a", "sentences": ["a"]}, "parameters": {}})
        assert r.status_code == 200 and abs(r.json()[0] - 1) < 1e-5
        r = c.post("/tokenize", json={"inputs": "cat", "prompt_name": "query"})
        assert [t["id"] for t in r.json()[0]] == [t[0] for t in model.tokens(["query: cat"])[0]]
    with TestClient(create_app(Settings(model_path=str(folder), default_prompt_name="query"))) as c:
        r = c.post("/embed", json={"inputs": texts})
        want = model.encode(texts, prompt_name="query", normalize=True)
        np.testing.assert_allclose(np.array(r.json(), dtype=np.float32), want, atol=1e-5)


def test_embed_dimensions_and_normalize(client, embedder):
    r = client.post("/embed", json={"inputs": ["a cat"], "dimensions": 32})
    v = np.array(r.json()[0])
    assert v.shape == (32,) and abs(np.linalg.norm(v) - 1) < 1e-5
    full = embedder.encode(["a cat"])[0]
    np.testing.assert_allclose(v, full[:32] / np.linalg.norm(full[:32]), atol=1e-5)


# --- 3. /predict pairs and batches, /rerank raw scores ----------------------------


def _softmax(x):
    e = np.exp(np.asarray(x, dtype=np.float64) - np.max(x))
    return e / e.sum()


def test_predict_takes_a_text_a_pair_and_a_batch_as_tei_does(tiny_dir):
    g = json.loads((tiny_dir / "classifier/golden.json").read_text())
    model = rinfer.Classifier.load(tiny_dir / "classifier")
    a, b = g["texts"][1], g["texts"][6]
    pair = model.pair_logits([(a, b)])[0]
    singles = model.logits([a, b])
    assert np.abs(pair - singles[0]).max() > 1e-3  # a pair is not its first text
    labels = g["labels"]

    def as_dict(row):
        return {x["label"]: x["score"] for x in row}

    with TestClient(create_app(Settings(model_path=str(tiny_dir / "classifier")))) as c:
        r = c.post("/predict", json={"inputs": [a, b], "raw_scores": True})  # one pair
        assert r.status_code == 200, r.text
        row = r.json()
        assert isinstance(row[0], dict) and [x["score"] for x in row] == sorted((x["score"] for x in row), reverse=True)
        assert as_dict(row) == {lab: float(v) for lab, v in zip(labels, pair)}  # exact logits
        r = c.post("/predict", json={"inputs": [a]})  # one text, as TEI: a list of one string
        got = as_dict(r.json())
        for lab, p in zip(labels, _softmax(singles[0])):
            assert abs(got[lab] - p) < 1e-6
        r = c.post("/predict", json={"inputs": [[a], [a, b], [b]], "raw_scores": True})  # a batch
        rows = r.json()
        assert len(rows) == 3 and all(isinstance(x, list) for x in rows)
        assert as_dict(rows[0]) == {lab: float(v) for lab, v in zip(labels, singles[0])}
        assert as_dict(rows[1]) == {lab: float(v) for lab, v in zip(labels, pair)}
        assert as_dict(rows[2]) == {lab: float(v) for lab, v in zip(labels, singles[1])}
        r = c.post("/predict", json={"inputs": [[a, b, a]]})
        assert r.status_code == 422 and r.json()["error_type"] == "Validation"
        assert c.post("/predict", json={"inputs": []}).json()["error_type"] == "Empty"
        r = c.post("/predict", json={"inputs": "word " * 100, "truncate": False})
        assert r.status_code == 422 and r.json()["error_type"] == "Validation"
        assert c.post("/predict", json={"inputs": "word " * 100}).status_code == 200  # auto-truncate


def test_rerank_raw_scores_are_the_logits_and_scores_their_sigmoid(tiny_dir):
    g = json.loads((tiny_dir / "reranker/golden.json").read_text())
    model = rinfer.Reranker.load(tiny_dir / "reranker")
    logits = np.asarray(model.pair_logits([(g["query"], t) for t in g["texts"]])).reshape(len(g["texts"]))
    with TestClient(create_app(Settings(model_path=str(tiny_dir / "reranker")))) as c:
        raw = c.post("/rerank", json={"query": g["query"], "texts": g["texts"], "raw_scores": True}).json()
        assert [x["index"] for x in raw] == sorted(range(len(logits)), key=lambda i: -logits[i])
        assert all(x["score"] == float(logits[x["index"]]) for x in raw)  # exact, not via a sigmoid
        assert all("text" not in x for x in raw)
        r = c.post("/rerank", json={"query": g["query"], "texts": g["texts"], "return_text": True})
        for x in r.json():
            assert abs(x["score"] - 1 / (1 + np.exp(-float(logits[x["index"]])))) < 1e-6
            assert x["text"] == g["texts"][x["index"]]
        r = c.post("/rerank", json={"query": g["query"], "texts": []})
        assert r.status_code == 400 and r.json() == {"error": "`texts` cannot be empty", "error_type": "Empty"}
        r = c.post("/rerank", json={"query": "q", "texts": ["word " * 100], "truncate": False})
        assert r.status_code == 422 and r.json()["error_type"] == "Validation"
        assert c.post("/rerank", json={"query": "q", "texts": ["word " * 100]}).status_code == 200
        # a cross-encoder on /predict scores pairs
        r = c.post("/predict", json={"inputs": [g["query"], g["texts"][0]], "raw_scores": True})
        assert r.status_code == 200 and r.json()[0]["score"] == float(logits[0])


# --- 4. OpenAI names, /v1/models/{id}, Cohere/Jina /v1/rerank -----------------------


def test_served_model_name_is_reported_never_the_requests(model_dir, tmp_path):
    with TestClient(create_app(Settings(model_path=str(model_dir), served_model_name="my-embedder"))) as c:
        r = c.post("/v1/embeddings", json={"input": "x", "model": "text-embedding-3-small"})
        assert r.json()["model"] == "my-embedder"
        assert [m["id"] for m in c.get("/v1/models").json()["data"]] == ["my-embedder"]
        assert c.get("/v1/models/my-embedder").json()["id"] == "my-embedder"
        assert c.get("/info").json()["model_id"] == "my-embedder"
    import shutil

    from rinfer.server.app import served_name

    snap = tmp_path / "hub/models--acme--tiny-embedder/snapshots/0123abcd"
    shutil.copytree(_tiny("gelu-mean"), snap)
    assert served_name(Settings(model_path=str(snap))) == "acme/tiny-embedder"  # a Hugging Face cache snapshot
    with TestClient(create_app(Settings(model_path=str(_tiny("gelu-mean"))))) as c:
        assert c.post("/v1/embeddings", json={"input": "x"}).json()["model"] == "gelu-mean"
        assert c.get("/v1/models/gelu-mean").status_code == 200


def test_cohere_style_rerank(tiny_dir):
    g = json.loads((tiny_dir / "reranker/golden.json").read_text())
    model = rinfer.Reranker.load(tiny_dir / "reranker")
    logits = np.asarray(model.pair_logits([(g["query"], t) for t in g["texts"]])).reshape(len(g["texts"]))
    best = sorted(range(len(logits)), key=lambda i: -logits[i])
    docs = [g["texts"][0], *({"text": t} for t in g["texts"][1:])]
    with TestClient(create_app(Settings(model_path=str(tiny_dir / "reranker")))) as c:
        r = c.post("/v1/rerank", json={"query": g["query"], "documents": docs, "top_n": 3, "return_documents": True})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["id"] and body["meta"] and body["model"] == "reranker"
        assert [x["index"] for x in body["results"]] == best[:3]
        for x in body["results"]:
            assert abs(x["relevance_score"] - 1 / (1 + np.exp(-float(logits[x["index"]])))) < 1e-6
            assert x["document"] == {"text": g["texts"][x["index"]]}
        r = c.post("/v1/rerank", json={"query": g["query"], "documents": g["texts"], "model": "rerank-v3.5"})
        assert len(r.json()["results"]) == len(g["texts"]) and "document" not in r.json()["results"][0]
        r = c.post("/v1/rerank", json={"query": "q", "documents": ["a"], "rank_by": "x"})
        assert r.status_code == 422 and r.json()["error"]["param"] == "rank_by"


# --- 5. one admission control for every engine call ---------------------------------


def test_engine_calls_outside_the_batcher_are_dropped_unrun_past_their_deadline(tiny_dir):
    with TestClient(create_app(Settings(model_path=str(tiny_dir / "reranker")))) as c:
        admission = c.app.state.admission
        gate = threading.Event()
        admission.executor.submit(gate.wait, 10)  # the engine thread is busy
        try:
            r = c.post("/rerank", json={"query": "q", "texts": ["a"]}, headers={"X-Request-Timeout": "0.2"})
            assert r.status_code == 503 and r.json()["error_type"] == "Overloaded", r.text
            r = c.post("/v1/rerank", json={"query": "q", "documents": ["a"]}, headers={"X-Request-Timeout": "0.2"})
            assert r.status_code == 503 and r.json()["error"]["code"] == "deadline_exceeded"
        finally:
            gate.set()
        assert c.post("/rerank", json={"query": "q", "texts": ["a"]}).status_code == 200
        assert admission.dropped == 2 and admission.runs == 1 and admission.queued == 0
        text = c.get("/metrics").text
        assert "rinfer_expired_requests_total 2.0" in text and "rinfer_dropped_total 2.0" in text


class _Leaving:
    """A request whose client disconnects after `after_s`."""

    def __init__(self, app, after_s: float) -> None:
        self.app, self.headers, self._after = app, {}, after_s

    async def receive(self) -> dict:
        await asyncio.sleep(self._after)
        return {"type": "http.disconnect"}


def test_engine_calls_of_clients_that_left_are_dropped_unrun(tiny_dir):
    from fastapi import HTTPException
    from rinfer.server.service import Admission, run_engine

    app = create_app(Settings(model_path=str(tiny_dir / "reranker")))
    ran = []

    async def main():
        app.state.admission = admission = Admission(8)
        gate = threading.Event()
        admission.executor.submit(gate.wait, 10)
        try:
            with pytest.raises(HTTPException) as e:
                await run_engine(_Leaving(app, 0.05), 1, ran.append, "work")
            assert e.value.status_code == 499
        finally:
            gate.set()
        await asyncio.sleep(0.05)
        return admission.stats()

    stats = asyncio.run(main())
    assert ran == [] and stats["dropped"] == 1 and stats["queued"] == 0


def test_token_id_inputs_and_jobs_go_through_the_admission_queue(model_dir, golden):
    with TestClient(create_app(Settings(model_path=str(model_dir)))) as c:
        admission = c.app.state.admission
        r = c.post("/v1/embeddings", json={"input": golden["ids"][:2]})
        assert r.status_code == 200 and admission.runs == 1
        r = c.post("/v1/jobs", json={"inputs": ["a", "b", "c"]})
        job = r.json()["id"]
        for _ in range(200):
            if c.get(f"/v1/jobs/{job}").json()["status"] == "succeeded":
                break
            threading.Event().wait(0.01)
        assert c.get(f"/v1/jobs/{job}").json()["status"] == "succeeded" and admission.runs == 2
        admission.max_queue = 0
        r = c.post("/v1/embeddings", json={"input": golden["ids"][:1]})
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"


# --- 6. TEI's launcher flags ---------------------------------------------------------


def test_tei_launcher_flags_are_accepted(monkeypatch, model_dir):
    from rinfer import cli

    seen = {}

    def fake_run(app, **kw):
        seen["settings"], seen["kw"] = app.state.settings, kw

    import uvicorn

    monkeypatch.setattr(uvicorn, "run", fake_run)
    argv = [
        "serve",
        "--model-id",
        str(model_dir),
        "--hostname",
        "0.0.0.0",
        "--port",
        "3000",
        "--max-client-batch-size",
        "16",
        "--max-batch-tokens",
        "4096",
        "--no-auto-truncate",
        "--pooling",
        "mean",
        "--dtype",
        "float32",
        "--served-model-name",
        "minilm",
        "--payload-limit",
        "2000000",
        "--api-key",
        "k",
        "--json-output",
        "--default-prompt-name",
        "query",
    ]
    assert cli.main(argv) == 0
    s = seen["settings"]
    assert (s.model_path, s.host, s.port, s.max_inputs, s.max_batch_tokens) == (
        str(model_dir),
        "0.0.0.0",
        3000,
        16,
        4096,
    )
    assert (s.auto_truncate, s.pooling, s.dtype, s.served_model_name) == (False, "mean", "f32", "minilm")
    assert (s.max_body_bytes, s.api_key, s.default_prompt_name) == (2000000, ["k"], "query")
    assert seen["kw"]["host"] == "0.0.0.0" and seen["kw"]["port"] == 3000
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["serve", "--dtype", "float16"])
    monkeypatch.setenv("RINFER_CORS_ORIGINS", "http://a.example, http://b.example")
    assert Settings().cors_origins == ["http://a.example", "http://b.example"]


def test_version_flag(capsys):
    from rinfer import cli

    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"rinfer {rinfer.__version__}"


def test_pooling_flag_must_agree_with_the_folder(model_dir):
    app = create_app(Settings(model_path=str(model_dir), pooling="cls"))
    with pytest.raises(RuntimeError, match="--pooling cls disagrees with the model folder .* mean"), TestClient(app):
        pass
    with TestClient(create_app(Settings(model_path=str(model_dir), pooling="mean"))) as c:
        assert c.get("/info").json()["pooling"] == ["mean"]
