"""Decoder families through Python and the server, against sentence-transformers'
own outputs (goldens of scripts/make_golden_decoders.py): Qwen3-Embedding-shaped
(last token, prompts) and EmbeddingGemma-shaped (bidirectional, Dense, Matryoshka)
embedders, the Qwen3-Reranker CrossEncoder (yes/no logits through its chat
template) and its seq-cls conversion. The folder decides; no new flag."""

from __future__ import annotations

import base64
import json
import pathlib

import numpy as np
import pytest
import rinfer
from fastapi.testclient import TestClient
from rinfer.server import Settings, create_app

DATA = pathlib.Path(__file__).resolve().parents[2] / "tests/data/decoders"


def golden(name: str) -> dict:
    return json.loads((DATA / name / "golden.json").read_text())


def vectors(g: dict, key: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(g[key]), dtype="<f4").reshape(len(g["texts"]), -1)


@pytest.mark.parametrize("name", ["qwen3_embedding", "embeddinggemma"])
def test_decoder_embedders_match_sentence_transformers(name):
    g = golden(name)
    assert rinfer.model_kind(DATA / name) == "embedder"
    model = rinfer.Embedder.load(DATA / name)
    assert model.model_info["model_type"] in ("qwen3", "gemma3_text")
    assert np.abs(model.encode(g["texts"]) - vectors(g, "st_embeddings")).max() <= 1e-4
    got = model.encode(g["texts"], prompt_name="query")
    assert np.abs(got - vectors(g, "st_embeddings_query")).max() <= 1e-4


def test_sentence_transformers_api_on_a_decoder():
    g = golden("embeddinggemma")
    st = rinfer.SentenceTransformer(DATA / "embeddinggemma", truncate_dim=32)
    got = st.encode(g["texts"])
    assert got.shape == (len(g["texts"]), 32)
    assert np.abs(got - vectors(g, "st_embeddings_truncate_dim_32")).max() <= 1e-4
    g = golden("qwen3_embedding")
    q = rinfer.SentenceTransformer(DATA / "qwen3_embedding").encode_query(g["texts"])
    assert np.abs(q - vectors(g, "st_embeddings_query")).max() <= 1e-4


@pytest.mark.parametrize("name", ["qwen3_reranker", "qwen3_reranker_seqcls"])
def test_decoder_rerankers_match(name):
    g = golden(name)
    assert rinfer.model_kind(DATA / name) == "reranker"
    pairs = [tuple(p) for p in g["pairs"]]
    got = rinfer.Reranker.load(DATA / name).pair_logits(pairs)
    assert np.abs(np.asarray(got) - np.asarray(g["pair_logits"])).max() <= 1e-4
    if "pair_scores" in g:
        scores = rinfer.CrossEncoder(DATA / name).predict(pairs)
        assert np.abs(scores - np.asarray(g["pair_scores"])).max() <= 1e-4


def test_server_serves_decoder_embedders_and_rerankers():
    g = golden("qwen3_embedding")
    with TestClient(create_app(Settings(model_path=str(DATA / "qwen3_embedding")))) as c:
        r = c.post("/embed", json={"inputs": g["texts"]})
        assert r.status_code == 200, r.text
        assert np.abs(np.asarray(r.json()) - vectors(g, "st_embeddings")).max() <= 1e-4
        r = c.post("/embed", json={"inputs": g["texts"][:2], "prompt_name": "query"})
        assert r.status_code == 200, r.text
        assert np.abs(np.asarray(r.json()) - vectors(g, "st_embeddings_query")[:2]).max() <= 1e-4
        r = c.post("/v1/embeddings", json={"input": g["texts"][:2], "model": "x"})
        assert r.status_code == 200, r.text
        got = np.asarray([d["embedding"] for d in r.json()["data"]])
        assert np.abs(got - vectors(g, "st_embeddings")[:2]).max() <= 1e-4
    g = golden("qwen3_reranker")
    query = g["pairs"][0][0]
    docs = [p[1] for p in g["pairs"] if p[0] == query]
    want = [lg for p, lg in zip(g["pairs"], g["pair_logits"]) if p[0] == query]
    with TestClient(create_app(Settings(model_path=str(DATA / "qwen3_reranker")))) as c:
        r = c.post("/rerank", json={"query": query, "texts": docs, "raw_scores": True})
        assert r.status_code == 200, r.text
        for x in r.json():
            assert abs(x["score"] - want[x["index"]]) < 1e-4
