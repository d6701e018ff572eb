"""Output quantisation over HTTP: OpenAI's `encoding_format` (float | base64 of
little-endian float32) and `embedding_type` / `embedding_types` (int8, uint8, binary,
ubinary) calibrated as sentence-transformers' `quantize_embeddings` does."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from fastapi.testclient import TestClient
from rinfer.server import Settings, create_app


@pytest.fixture(scope="module")
def client(model_dir):
    with TestClient(create_app(Settings(model_path=str(model_dir)))) as c:
        yield c


def _reference(emb: np.ndarray, precision: str) -> np.ndarray:
    """sentence-transformers.quantization.quantize_embeddings (v3-v5), calibration on
    the embeddings themselves, transcribed independently of rinfer.compat."""
    if precision in ("int8", "uint8"):
        starts = emb.min(axis=0)
        steps = (emb.max(axis=0) - starts) / 255
        steps[steps == 0] = 1.0  # one row: sentence-transformers divides by zero here
        if precision == "uint8":
            return ((emb - starts) / steps).astype(np.uint8)
        return ((emb - starts) / steps - 128).astype(np.int8)
    if precision == "binary":
        return (np.packbits(emb > 0).reshape(emb.shape[0], -1) - 128).astype(np.int8)
    return np.packbits(emb > 0).reshape(emb.shape[0], -1)


TEXTS = ["a cat sat on the mat", "stock markets fell sharply", "the weather is sunny", "quantum field theory"]


def _floats(client, **kw) -> np.ndarray:
    r = client.post("/v1/embeddings", json={"input": TEXTS, **kw})
    assert r.status_code == 200, r.text
    return np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)


@pytest.mark.parametrize("kind", ["int8", "uint8", "binary", "ubinary"])
def test_embedding_type_matches_sentence_transformers_quantize(client, kind):
    floats = _floats(client)
    r = client.post("/v1/embeddings", json={"input": TEXTS, "embedding_type": kind})
    assert r.status_code == 200, r.text
    got = np.array([d["embedding"] for d in r.json()["data"]])
    want = _reference(floats, kind)
    assert got.shape == want.shape and all(isinstance(x, int) for x in r.json()["data"][0]["embedding"])
    # int8/uint8 calibration: a float rounding at a step boundary may move one step
    assert np.abs(got.astype(np.int64) - want.astype(np.int64)).max() <= (1 if kind in ("int8", "uint8") else 0)
    assert (got == want).mean() > 0.99
    assert want.shape[1] == (384 if kind in ("int8", "uint8") else 48)


def test_quantised_with_dimensions_and_base64(client):
    floats = _floats(client, dimensions=64)
    r = client.post(
        "/v1/embeddings",
        json={"input": TEXTS, "embedding_type": "ubinary", "dimensions": 64, "encoding_format": "base64"},
    )
    rows = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in r.json()["data"]]
    np.testing.assert_array_equal(np.array(rows), _reference(floats, "ubinary").astype(np.float32))
    r = client.post("/v1/embeddings", json={"input": TEXTS, "encoding_format": "base64"})
    rows = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in r.json()["data"]]
    np.testing.assert_array_equal(np.array(rows), _floats(client))


def test_embedding_types_give_each_type(client):
    floats = _floats(client)
    r = client.post("/v1/embeddings", json={"input": TEXTS, "embedding_types": ["float", "binary", "int8"]})
    assert r.status_code == 200, r.text
    items = r.json()["data"]
    assert set(items[0]["embedding"]) == {"float", "binary", "int8"}
    np.testing.assert_array_equal(np.array([d["embedding"]["binary"] for d in items]), _reference(floats, "binary"))
    np.testing.assert_allclose(np.array([d["embedding"]["float"] for d in items]), floats)


def test_bad_quantisation_requests_are_422_in_openais_shape(client):
    for body in [
        {"input": "x", "embedding_type": "int4"},
        {"input": "x", "embedding_types": []},
        {"input": "x", "embedding_type": "int8", "embedding_types": ["int8"]},
        {"input": "x", "encoding_format": "hex"},
    ]:
        r = client.post("/v1/embeddings", json=body)
        assert r.status_code == 422, (body, r.text)
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_python_api_precision_and_http_share_one_implementation(client, model_dir):
    from rinfer import SentenceTransformer

    st = SentenceTransformer(str(model_dir))
    for kind in ("int8", "binary"):
        want = st.encode(TEXTS, precision=kind)
        r = client.post("/v1/embeddings", json={"input": TEXTS, "embedding_type": kind})
        got = np.array([d["embedding"] for d in r.json()["data"]])
        assert np.abs(got.astype(np.int64) - want.astype(np.int64)).max() <= 1


def test_openai_client_decodes_quantised_base64(client):
    import openai  # in the test lock: missing is a failure, not a skip

    oc = openai.OpenAI(api_key="unused", base_url="http://testserver/v1", http_client=client)
    # the client asks for base64 by default and decodes little-endian float32
    resp = oc.embeddings.create(model="m", input=TEXTS, extra_body={"embedding_type": "int8"})
    got = np.array([d.embedding for d in resp.data])
    r = client.post("/v1/embeddings", json={"input": TEXTS, "embedding_type": "int8"})
    np.testing.assert_array_equal(got, np.array([d["embedding"] for d in r.json()["data"]]))
