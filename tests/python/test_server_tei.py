"""TEI's remaining routes (/decode, /embeddings, /invocations, /ping, /embed_all),
token-id inputs and timing headers on /embed, TEI's /info, and every TEI route's
answers validated against TEI's published OpenAPI document (a trimmed copy in
tests/python/data/tei_openapi.json, source and version inside)."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from rinfer.server import Settings, create_app
from rinfer.server.decode import Decoder

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPEC = json.loads((ROOT / "tests/python/data/tei_openapi.json").read_text())


# --- a validator for the subset of OpenAPI 3.0 schema TEI's document uses ---------


def _errors(value, schema: dict, where: str = "$") -> list[str]:
    if "$ref" in schema:
        return _errors(value, SPEC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]], where)
    if value is None:
        return [] if schema.get("nullable") else [f"{where}: null where not nullable"]
    out: list[str] = []
    for sub in schema.get("allOf", []):
        out += _errors(value, sub, where)
    if "oneOf" in schema:
        ok = sum(not _errors(value, sub, where) for sub in schema["oneOf"])
        if ok != 1:
            out.append(f"{where}: matches {ok} of oneOf, not exactly one")
    kind = schema.get("type")
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "boolean": lambda v: isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    }
    if kind is not None and not checks[kind](value):
        return out + [f"{where}: {type(value).__name__} is not {kind}"]
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{where}: {value!r} not in {schema['enum']}")
    if "minimum" in schema and isinstance(value, (int, float)) and value < schema["minimum"]:
        out.append(f"{where}: {value} < {schema['minimum']}")
    if kind == "object":
        for key in schema.get("required", []):
            if key not in value:
                out.append(f"{where}: missing required `{key}`")
        props = schema.get("properties", {})
        for key, v in value.items():
            if key in props:
                out += _errors(v, props[key], f"{where}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                out += _errors(v, schema["additionalProperties"], f"{where}.{key}")
    if kind == "array" and "items" in schema:
        for i, v in enumerate(value):
            out += _errors(v, schema["items"], f"{where}[{i}]")
    return out


def conforms(path: str, response, method: str = "post") -> None:
    """The response body matches TEI's schema for `path`, `method` and its status."""
    spec_path = "/v1/embeddings" if path == "/embeddings" else path
    schema = SPEC["paths"][spec_path][method]["responses"][str(response.status_code)]["schema"]
    problems = _errors(response.json(), schema)
    assert not problems, (path, response.status_code, problems[:5])


def test_the_validator_refuses_what_tei_would_not_send():
    assert _errors([[1.0, 2.0]], {"$ref": "#/components/schemas/EmbedResponse"}) == []
    assert _errors([1.0], {"$ref": "#/components/schemas/EmbedResponse"})
    assert _errors({"error": "x", "error_type": "Oops"}, {"$ref": "#/components/schemas/ErrorResponse"})
    assert _errors([{"index": 0}], {"$ref": "#/components/schemas/RerankResponse"})
    assert _errors({"model_type": {"embedding": {}}}, {"$ref": "#/components/schemas/Info"})
    assert SPEC["x-source"]["version"] and SPEC["x-source"]["commit"]


# --- an embedder ------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(model_dir):
    with TestClient(create_app(Settings(model_path=str(model_dir), max_inputs=8))) as c:
        yield c


def test_embedder_routes_conform_to_teis_openapi(client, golden):
    cases = [
        ("/embed", {"inputs": "hello"}),
        ("/embed", {"inputs": ["a", "b"], "normalize": False, "dimensions": 32}),
        ("/embed", {"inputs": golden["ids"][0]}),
        ("/embed", {"inputs": ["text", golden["ids"][1]]}),
        ("/embed", {"inputs": []}),  # 400
        ("/embed", {"inputs": ["x"] * 9}),  # 413
        ("/embed", {"inputs": "word " * 400, "truncate": False}),  # 422
        ("/embed", {"inputs": "x", "extra": 1}),  # 422
        ("/predict", {"inputs": "x"}),  # 424
        ("/rerank", {"query": "q", "texts": ["a"]}),  # 424
        ("/embed_sparse", {"inputs": "x"}),  # 424
        ("/tokenize", {"inputs": ["hello world", "a"]}),
        ("/tokenize", {"inputs": "hello", "add_special_tokens": False}),
        ("/decode", {"ids": golden["ids"][0]}),
        ("/decode", {"ids": golden["ids"][:2], "skip_special_tokens": False}),
        ("/decode", {"ids": [[1]] * 9}),  # 413
        ("/similarity", {"inputs": {"source_sentence": "a cat", "sentences": ["a dog", "stocks"]}}),
        ("/v1/embeddings", {"input": ["a", "b"]}),
        ("/v1/embeddings", {"input": "a", "encoding_format": "base64"}),
        ("/embeddings", {"input": "a"}),
    ]
    for path, body in cases:
        r = client.post(path, json=body)
        assert r.status_code in (200, 400, 413, 422, 424), (path, body, r.text)
        conforms(path, r)
    conforms("/info", client.get("/info"), "get")


def test_info_has_teis_fields(client, model_dir):
    info = client.get("/info").json()
    assert info["model_type"] == {"embedding": {"pooling": "mean"}}
    assert info["model_id"] == info["served_model_name"] == model_dir.name
    assert info["max_input_length"] == 256 and info["max_client_batch_size"] == 8 and info["auto_truncate"] is True
    assert info["model_dim"] == 384  # rinfer's own fields stay


def test_embed_takes_token_ids_as_tei_does(client, golden):
    r = client.post("/embed", json={"inputs": golden["ids"][0]})
    np.testing.assert_allclose(np.array(r.json()[0]), golden["vectors"][0], atol=1e-4)
    r = client.post("/embed", json={"inputs": [golden["texts"][1], golden["ids"][2], golden["texts"][3]]})
    np.testing.assert_allclose(np.array(r.json()), golden["vectors"][1:4], atol=1e-4)
    long = [101] + [7592] * 400 + [102]
    r = client.post("/embed", json={"inputs": long, "truncate": False})
    assert r.status_code == 422 and r.json()["error_type"] == "Validation"
    right = client.post("/embed", json={"inputs": long}).json()[0]
    want = client.post("/embed", json={"inputs": long[:256]}).json()[0]
    np.testing.assert_allclose(right, want, atol=1e-6)
    left = client.post("/embed", json={"inputs": long, "truncation_direction": "Left"}).json()[0]
    np.testing.assert_allclose(left, client.post("/embed", json={"inputs": long[-256:]}).json()[0], atol=1e-6)
    r = client.post("/embed", json={"inputs": golden["ids"][0], "prompt_name": "query"})
    assert r.status_code == 422


def test_embed_answers_teis_timing_headers(client, golden):
    r = client.post("/embed", json={"inputs": golden["texts"][:3]})
    h = r.headers
    names = ["x-compute-time", "x-tokenization-time", "x-queue-time", "x-inference-time", "x-total-time"]
    for name in [*names, "x-compute-tokens", "x-compute-characters"]:
        assert h[name].isdigit(), (name, h.get(name))
    assert int(h["x-compute-tokens"]) == sum(len(x) for x in golden["ids"][:3])
    assert int(h["x-compute-characters"]) == sum(len(t) for t in golden["texts"][:3])
    assert int(h["x-total-time"]) >= int(h["x-inference-time"]) and h["x-compute-type"] == "cpu"
    r = client.post("/embed", json={"inputs": golden["ids"][:2]})  # through the admission queue
    assert int(r.headers["x-compute-tokens"]) == sum(len(x) for x in golden["ids"][:2])
    assert int(r.headers["x-total-time"]) >= int(r.headers["x-queue-time"]) + int(r.headers["x-inference-time"]) - 1


def test_decode_as_tokenizers_decodes(client, golden, model_dir):
    r = client.post("/decode", json={"ids": golden["ids"][:2]})
    assert r.status_code == 200 and len(r.json()) == 2 and all(isinstance(t, str) for t in r.json())
    ids = client.post("/tokenize", json={"inputs": "Welcome to the 🤗 Tokenizers library."}).json()[0]
    ids = [t["id"] for t in ids]
    # the tokenizers quicktour's output for a BERT WordPiece tokenizer
    assert client.post("/decode", json={"ids": ids}).json() == ["welcome to the tokenizers library."]
    kept = client.post("/decode", json={"ids": [ids], "skip_special_tokens": False}).json()
    assert kept == ["[CLS] welcome to the [UNK] tokenizers library. [SEP]"]
    r = client.post("/decode", json={"ids": [10**9]})
    assert r.status_code == 422 and r.json()["error_type"] == "Tokenizer"
    r = client.post("/decode", json={"ids": [], "extra": 1})
    assert r.status_code == 422


@pytest.mark.parametrize("folder", ["qwen3", "llama3", "gemma3", "mistral"])
def test_decode_round_trips_byte_level_and_sentencepiece_tokenizers(folder):
    import rinfer

    path = ROOT / "tests/data/decoders" / folder
    if not (path / "tokenizer.json").is_file():
        pytest.skip(f"no {path}")
    model = rinfer.Embedder.load(path)
    dec = Decoder(path)
    text = "Hello, world! Isn't it nice?  naïve café 東京 🤗"
    ids = model.tokenize([text])[0].tolist()
    assert dec.decode(ids) == text


def test_embeddings_alias_and_root_health(client):
    a = client.post("/embeddings", json={"input": ["a", "b"]}).json()
    b = client.post("/v1/embeddings", json={"input": ["a", "b"]}).json()
    assert a == b
    r = client.post("/embeddings", json={"input": "x", "temperature": 1})
    assert r.status_code == 422 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert client.get("/ping").json() == {"status": "ok"}


def test_embed_all_gives_every_tokens_vector(client, embedder, golden, tiny_dir):
    texts = ["a cat sits on the mat", "hello"]
    r = client.post("/embed_all", json={"inputs": texts})
    assert r.status_code == 200 and int(r.headers["x-compute-tokens"]) == sum(len(t) for t in embedder.tokenize(texts))
    want = embedder.encode_tokens(texts)
    got = r.json()
    assert [np.shape(g) for g in got] == [w.shape for w in want]
    for g, w in zip(got, want, strict=True):
        assert np.abs(np.asarray(g, dtype=np.float32) - w).max() <= 1e-6
    # One text: a batch of one, as TEI answers; token ids as /embed takes them.
    one = client.post("/embed_all", json={"inputs": "hello"}).json()
    assert np.allclose(one[0], got[1], atol=1e-6)
    ids = client.post("/embed_all", json={"inputs": golden["ids"][0]}).json()
    assert np.allclose(ids[0], embedder.encode_ids_tokens([golden["ids"][0]])[0], atol=1e-6)
    # Truncation as /embed does it: by default cut to the limit (256), else 422.
    long = "word " * 400
    assert len(client.post("/embed_all", json={"inputs": long}).json()[0]) == embedder.max_seq_length
    r = client.post("/embed_all", json={"inputs": long, "truncate": False})
    assert r.status_code == 422 and r.json()["error_type"] == "Validation"
    left = client.post("/embed_all", json={"inputs": long, "truncation_direction": "Left"}).json()[0]
    assert len(left) == embedder.max_seq_length
    r = client.post("/embed_all", json={"inputs": "x", "prompt_name": "nope"})
    assert r.status_code == 422 and "prompt_name" in r.json()["error"]
    r = client.post("/embed_all", json={"inputs": ["x"] * 9})
    assert r.status_code == 413
    with TestClient(create_app(Settings(model_path=str(tiny_dir / "reranker")))) as c:
        r = c.post("/embed_all", json={"inputs": "x"})
        assert r.status_code == 424 and r.json()["error_type"] == "Backend"


def test_invocations_dispatch_by_model_kind(client, tiny_dir):
    body = {"inputs": ["a cat", "a dog"]}
    assert client.post("/invocations", json=body).json() == client.post("/embed", json=body).json()
    assert client.post("/", json=body).json() == client.post("/embed", json=body).json()
    r = client.post("/invocations", json={"inputs": "x", "nope": 1})
    assert r.status_code == 422 and r.json()["error_type"] == "Validation" and "nope" in r.json()["error"]
    g = json.loads((tiny_dir / "reranker/golden.json").read_text())
    with TestClient(create_app(Settings(model_path=str(tiny_dir / "reranker")))) as c:
        body = {"query": g["query"], "texts": g["texts"], "raw_scores": True}
        r = c.post("/invocations", json=body)
        assert r.json() == c.post("/rerank", json=body).json()
        conforms("/rerank", r)
        info = c.get("/info")
        conforms("/info", info, "get")
        assert set(info.json()["model_type"]) == {"reranker"}
    g = json.loads((tiny_dir / "classifier/golden.json").read_text())
    with TestClient(create_app(Settings(model_path=str(tiny_dir / "classifier")))) as c:
        for body in [{"inputs": g["texts"][0]}, {"inputs": [[t] for t in g["texts"][:2]]}]:
            r = c.post("/invocations", json=body)
            assert r.json() == c.post("/predict", json=body).json()
            conforms("/predict", r)
        info = c.get("/info")
        conforms("/info", info, "get")
        labels = info.json()["model_type"]["classifier"]
        assert list(labels["id2label"].values()) == g["labels"] and labels["label2id"][g["labels"][0]] == 0
