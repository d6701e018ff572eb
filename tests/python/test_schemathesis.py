"""Schemathesis against a real `rinfer serve` on loopback, one server per kind of model
(a tiny embedder with background jobs, a reranker, a classifier, a SPLADE model and a
text generator, all from tests/data, one thread each). The schemathesis CLI loads the
server's live /openapi.json and runs every operation, with the API key sent so the
guarded routes are reached: the coverage phase (boundary and invalid values), fuzzing
(valid and invalid requests, at most RINFER_SCHEMATHESIS_EXAMPLES per operation, 12 by
default) and the stateful phase (a created job's id followed to its status, result and
cancellation through the schema's links). Checks: no 5xx, and responses that match the
schema. Deterministic: schemathesis' deterministic generation (no random seed, no
example database); about 60 s on 2 cores.

Below it, one focused test for each bug schemathesis found; each failed before its fix."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from live_server import serve
from rinfer.server import Settings, create_app

DATA = pathlib.Path(__file__).resolve().parents[2] / "tests/data"
KEY = "schemathesis-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
MODELS = {
    "embedder": DATA / "models/gelu-mean",
    "reranker": DATA / "models/reranker",
    "classifier": DATA / "models/classifier",
    "sparse": DATA / "st/splade-bert",
    "generator": DATA / "decoders/qwen3_chat",
}
EXAMPLES = int(os.environ.get("RINFER_SCHEMATHESIS_EXAMPLES", "12"))


@pytest.fixture(scope="module", params=list(MODELS))
def live(request, tmp_path_factory):
    """`rinfer serve` of one kind of model, with an API key, on a free loopback port."""
    jobs = tmp_path_factory.mktemp("schemathesis") / "jobs.db"
    extra = ["--threads", "1", "--api-key", KEY, "--job-store-url", f"sqlite:///{jobs}", "--request-timeout-s", "10"]
    with serve(MODELS[request.param], *extra) as base:
        yield base


def test_every_operation_of_every_kind_of_model(live, tmp_path):
    """Every operation of the live schema: the coverage phase (boundary and invalid
    values), fuzzing (valid and invalid requests) and the stateful phase (a created job's
    id followed to its status, result and cancellation through the schema's links)."""
    cmd = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{live}/openapi.json",
        "--header",
        f"Authorization: {AUTH['Authorization']}",
    ]
    cmd += ["--checks", "not_a_server_error,response_schema_conformance", "--max-examples", str(EXAMPLES)]
    cmd += ["--generation-deterministic", "--workers", "1", "--request-timeout", "20", "--no-color"]
    # in a folder of its own: no schemathesis.toml of the checkout is read, nothing is left behind
    run = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-12000:]
    assert re.search(r"\d+ generated, \d+ passed", out), out[-4000:]


# --- what schemathesis found, one focused test each ------------------------------------


def _raw(client, path: str, body: str, **kw):
    return client.post(path, content=body.encode(), headers={"content-type": "application/json"}, **kw)


@pytest.fixture(scope="module")
def embedder_client(tmp_path_factory):
    db = tmp_path_factory.mktemp("jobs") / "jobs.db"
    s = Settings(model_path=str(MODELS["embedder"]), job_store_url=f"sqlite:///{db}")
    with TestClient(create_app(s), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def generator_client():
    with TestClient(create_app(Settings(model_path=str(MODELS["generator"]), max_queue=2))) as c:
        yield c


@pytest.mark.parametrize("ids", [[-1], [101, 2**32], [2**70], [-(2**70)]])
def test_token_ids_outside_u32_are_a_422_not_a_500(embedder_client, ids):
    """The engine's conversion to u32 overflowed (OverflowError, TypeError: 500)."""
    c = embedder_client
    for path, body in [
        ("/embed", {"inputs": ids}),
        ("/embed", {"inputs": [ids, "text"]}),
        ("/v1/embeddings", {"input": ids}),
        ("/v1/embeddings", {"input": [ids]}),
        ("/embeddings", {"input": ids, "embedding_type": "binary"}),
        ("/decode", {"ids": ids}),
    ]:
        r = c.post(path, json=body)
        assert r.status_code == 422, (path, body, r.status_code, r.text)
    assert c.post("/embed", json={"inputs": [101, 2**32 - 1]}).status_code == 422  # a u32, outside the vocabulary


LONE = '"a\\ud83cb"'  # JSON's escape of a lone high surrogate: no valid Unicode text


@pytest.mark.parametrize(
    "path, body",
    [
        ("/embed", '{"inputs": %s}'),
        ("/embed", '{"inputs": ["ok", %s]}'),
        ("/v1/embeddings", '{"input": %s}'),
        ("/embeddings", '{"input": [%s]}'),
        ("/tokenize", '{"inputs": %s}'),
        ("/similarity", '{"inputs": {"source_sentence": %s, "sentences": ["x"]}}'),
        ("/v1/jobs", '{"inputs": [%s]}'),
        ("/embed", '{"inputs": "x", "prompt_name": %s}'),
    ],
)
def test_a_lone_surrogate_is_a_422_not_a_500(embedder_client, path, body):
    """A JSON string escaping half a surrogate pair decodes to text that neither the
    tokenizer nor SQLite can encode: it was a 500 (and, for a job, the end of all jobs:
    see the next test)."""
    r = _raw(embedder_client, path, body % LONE)
    assert r.status_code == 422, (path, r.status_code, r.text)
    assert "not valid Unicode" in r.text and "lone surrogate" in r.text
    # a surrogate pair is one valid character
    ok = _raw(embedder_client, path, body % '"a\\ud83c\\udf29b"')
    assert ok.status_code < 500 and "not valid Unicode" not in ok.text, (path, ok.text)


def test_a_failed_job_insert_does_not_leave_the_store_inside_its_transaction(tmp_path):
    """SQLite: an insert that failed between BEGIN and COMMIT left the connection in its
    transaction; every later job was refused ("cannot start a transaction within a
    transaction", a 500) until the server restarted."""
    from rinfer.server.jobs import SQLiteJobStore

    store = SQLiteJobStore(str(tmp_path / "jobs.db"))
    try:
        with pytest.raises(UnicodeEncodeError):
            store.create(["fine", "a\ud83cb"], None, True)
        job = store.create(["fine"], None, True)
        assert store.get(job.id).total == 1 and store.list_jobs(None, 10) == [store.get(job.id)]
    finally:
        store.close()


def test_a_generator_at_invocations_is_a_424_not_a_500(generator_client):
    for path in ("/invocations", "/"):
        r = generator_client.post(path, json={"inputs": "x"})
        assert r.status_code == 424 and "/v1/chat/completions" in r.text, (path, r.text)


@pytest.mark.parametrize(
    "extra",
    [
        {"repetition_penalty": 5e-320},  # positive for pydantic, 0 as the engine's f32
        {"repetition_penalty": 1e300},  # inf as f32
        {"top_p": 1e-320},
    ],
)
def test_a_streamed_request_the_engine_refuses_is_an_http_error_and_frees_its_slot(generator_client, extra):
    """The engine checks sampling options at the first step, which a stream used to take
    after its 200 had gone out: the body broke off mid-response, and the request's slot
    (of --max-queue, here 2) was never given back, so every later generation got 429."""
    c = generator_client
    for _ in range(3):
        for path, body in (
            ("/v1/completions", {"prompt": "hello", "max_tokens": 2}),
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
        ):
            r = c.post(path, json={**body, **extra, "stream": True})
            assert r.status_code == 422 and r.headers["content-type"] == "application/json", r.text
            assert "must be" in r.json()["error"]["message"]
    r = c.post("/v1/completions", json={"prompt": "hello", "max_tokens": 2, "stream": True})
    assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n")


@pytest.mark.parametrize(
    "extra",
    [
        {"seed": 2**70},
        {"seed": -(2**70)},
        {"top_k": 2**70},
        {"logit_bias": {str(10**12): 1.0}},
        {"logit_bias": {"-5": 1.0}},
        {"logit_bias": {"not a token": 1.0}},
        {"prompt": [-3, 5]},
        {"prompt": [2**40]},
    ],
)
def test_generation_options_out_of_the_engines_range_are_4xx_not_500(generator_client, extra):
    r = generator_client.post("/v1/completions", json={"prompt": "hello", "max_tokens": 2, **extra})
    assert 400 <= r.status_code < 500, (extra, r.status_code, r.text)


def test_seeds_are_taken_modulo_2_64(generator_client):
    """Negative seeds (OpenAI's are signed) and n > 1 at the top of the range work."""
    c = generator_client
    body = {"prompt": "hello", "max_tokens": 3, "temperature": 1.0}
    a = c.post("/v1/completions", json={**body, "seed": -1}).json()["choices"][0]["text"]
    b = c.post("/v1/completions", json={**body, "seed": 2**64 - 1}).json()["choices"][0]["text"]
    assert a == b
    r = c.post("/v1/completions", json={**body, "seed": 2**64 - 1, "n": 2})
    assert r.status_code == 200 and len(r.json()["choices"]) == 2
