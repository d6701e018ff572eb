"""The official `huggingface_hub` InferenceClient and `cohere` client against a real
`rinfer serve` on loopback, as their users point them at a TEI server or at Cohere's
API: feature_extraction / sentence_similarity / text_classification on TEI's routes,
and cohere's rerank on `POST /v1/rerank`, each checked against rinfer in-process.

Both packages are pinned in requirements-dev.txt: a missing one fails here (an
import error at collection), it is never skipped."""

from __future__ import annotations

import json
import pathlib

import cohere
import httpx
import huggingface_hub
import numpy as np
import pytest
import rinfer
from huggingface_hub import InferenceClient
from live_server import serve

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY = ROOT / "tests/data/models"
KEY = "sk-local-test"


@pytest.fixture(scope="module")
def embed_server(model_dir):
    with serve(model_dir) as base:
        yield base


@pytest.fixture(scope="module")
def classifier_server():
    with serve(TINY / "classifier", "--api-key", KEY) as base:
        yield base


@pytest.fixture(scope="module")
def rerank_server():
    with serve(TINY / "reranker", "--api-key", KEY, "--served-model-name", "local-reranker") as base:
        yield base


def _texts() -> list[str]:
    return json.loads((TINY / "classifier/golden.json").read_text())["texts"]


# --- huggingface_hub.InferenceClient, pointed at the server as at a TEI deployment ---


def test_inference_client_feature_extraction_on_tei_root_and_embed(embed_server, embedder):
    """A URL as model: the client POSTs to that URL as it is, `{"inputs": ...}` with
    TEI's options at the root of the body (TEI's "/" serves /embed for an embedder)."""
    texts = ["The cat sits on the mat.", "A cat rests on a rug.", "time " * 400]
    want = embedder.encode(texts)
    client = InferenceClient(embed_server)
    got = client.feature_extraction(texts)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5)
    one = client.feature_extraction(texts[0])
    assert one.shape == (1, want.shape[1])
    np.testing.assert_allclose(one[0], want[0], atol=1e-5)

    raw = InferenceClient(f"{embed_server}/embed").feature_extraction(
        texts, normalize=False, truncate=True, truncation_direction="right"
    )
    np.testing.assert_allclose(raw, embedder.encode(texts, normalize=False), atol=1e-5)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)

    # what TEI refuses, the client raises with TEI's status and body (422, Validation)
    with pytest.raises(huggingface_hub.errors.HfHubHTTPError) as e:
        client.feature_extraction(texts[2], truncate=False)
    assert e.value.response.status_code == 422 and e.value.response.json()["error_type"] == "Validation"


def test_inference_client_sentence_similarity(embed_server, embedder):
    """`{"inputs": {"source_sentence", "sentences"}, "parameters": {}}` to /similarity:
    cosines of the source to each sentence."""
    source, others = "A man is eating food.", ["A man is eating pasta.", "A monkey plays drums.", "Someone eats."]
    v = embedder.encode([source, *others])
    got = InferenceClient(f"{embed_server}/similarity").sentence_similarity(source, others)
    assert isinstance(got, list) and len(got) == len(others)
    np.testing.assert_allclose(got, v[1:] @ v[0], atol=1e-5)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x.astype(np.float64) - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_inference_client_text_classification(classifier_server):
    """`{"inputs": text, "parameters": {...}}` to TEI's "/" (/predict for a classifier),
    with the API key as `Authorization: Bearer`. TEI answers a single text with a flat
    list of labels, of which the client returns the first: the best one."""
    model = rinfer.Classifier.load(TINY / "classifier")
    labels = model.labels
    client = InferenceClient(classifier_server, api_key=KEY)
    for text in _texts()[:4]:
        probs = _softmax(np.asarray(model.logits([text]))[0])
        best = client.text_classification(text)
        assert best.label == labels[int(np.argmax(probs))]
        assert abs(best.score - probs.max()) < 1e-5

    text = _texts()[1]
    logits = np.asarray(model.logits([text]))[0].astype(np.float64)
    raw = InferenceClient(f"{classifier_server}/predict", api_key=KEY).text_classification(
        text, function_to_apply="none", top_k=2
    )
    assert raw.label == labels[int(np.argmax(logits))] and abs(raw.score - logits.max()) < 1e-5
    sig = client.text_classification(text, function_to_apply="sigmoid")
    assert abs(sig.score - 1 / (1 + np.exp(-logits.max()))) < 1e-5
    # the whole answer on the wire: TEI's /predict shape, cut to top_k
    r = httpx.post(
        f"{classifier_server}/predict",
        json={"inputs": text, "parameters": {"top_k": 2}},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert r.status_code == 200 and [x["label"] for x in r.json()] == [labels[i] for i in np.argsort(-logits)[:2]]
    for bad in ({"topk": 2}, {"function_to_apply": "softmax"}):  # a misspelt parameter; two answers asked for
        body = {"inputs": text, "parameters": bad, "raw_scores": "function_to_apply" in bad}
        r = httpx.post(f"{classifier_server}/predict", json=body, headers={"Authorization": f"Bearer {KEY}"})
        assert r.status_code == 422 and r.json()["error_type"] == "Validation", r.text

    with pytest.raises(huggingface_hub.errors.HfHubHTTPError) as e:
        InferenceClient(classifier_server, api_key="wrong").text_classification(text)
    assert e.value.response.status_code == 401


# --- cohere.Client.rerank against /v1/rerank --------------------------------------------


def test_cohere_client_rerank(rerank_server):
    g = json.loads((TINY / "reranker/golden.json").read_text())
    ce = rinfer.CrossEncoder(TINY / "reranker")
    want = ce.rank(g["query"], g["texts"])
    co = cohere.Client(api_key=KEY, base_url=rerank_server)
    resp = co.rerank(query=g["query"], documents=g["texts"], model="rerank-v3.5", top_n=3, return_documents=True)
    assert resp.id
    assert [r.index for r in resp.results] == [w["corpus_id"] for w in want[:3]]
    for r, w in zip(resp.results, want[:3]):
        assert abs(r.relevance_score - w["score"]) < 1e-6
        assert r.document is not None and r.document.text == g["texts"][r.index]

    docs = [{"text": t} for t in g["texts"]]
    every = co.rerank(query=g["query"], documents=docs)
    assert [r.index for r in every.results] == [w["corpus_id"] for w in want]
    np.testing.assert_allclose([r.relevance_score for r in every.results], [w["score"] for w in want], atol=1e-6)
    assert all(r.document is None for r in every.results)

    with pytest.raises(cohere.errors.UnauthorizedError):
        cohere.Client(api_key="wrong", base_url=rerank_server).rerank(query="q", documents=["a"])


def test_cohere_client_v2_rerank(rerank_server):
    g = json.loads((TINY / "reranker/golden.json").read_text())
    want = rinfer.CrossEncoder(TINY / "reranker").rank(g["query"], g["texts"])
    co = cohere.ClientV2(api_key=KEY, base_url=rerank_server)
    resp = co.rerank(model="rerank-v3.5", query=g["query"], documents=g["texts"], top_n=2)
    assert resp.id and [r.index for r in resp.results] == [w["corpus_id"] for w in want[:2]]
    np.testing.assert_allclose([r.relevance_score for r in resp.results], [w["score"] for w in want[:2]], atol=1e-6)
    every = co.rerank(model="rerank-v3.5", query=g["query"], documents=g["texts"], max_tokens_per_doc=4096)
    assert [r.index for r in every.results] == [w["corpus_id"] for w in want]
    with pytest.raises(cohere.errors.UnprocessableEntityError):
        co.rerank(model="m", query="q", documents=["a"], relevant_spans={"enabled": True})
    with pytest.raises(cohere.errors.UnauthorizedError):
        cohere.ClientV2(api_key="wrong", base_url=rerank_server).rerank(model="m", query="q", documents=["a"])
