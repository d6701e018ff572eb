"""OpenAI-compatible routes: ``POST /v1/embeddings``, ``GET /v1/models`` and
``/v1/models/{id}``; and Cohere/Jina-style ``POST /v1/rerank`` (and Cohere's v2 at
``POST /v2/rerank``). Responses name the
served model (``--served-model-name``, default: the model folder's name), never the
name a request sent."""

from __future__ import annotations

import base64
import uuid

import numpy as np
from fastapi import APIRouter, Request

from ...compat import quantize_embeddings
from ..errors import ApiError
from ..schemas import CohereRerankRequest, CohereRerankV2Request, EmbeddingsRequest
from ..service import check_count, embed_texts, embedder_of, json_response, model_of, run_engine, shrink, truncate_of

router = APIRouter(prefix="/v1", tags=["openai"])
cohere_v2 = APIRouter(prefix="/v2", tags=["openai"])
alias = APIRouter(tags=["openai"])  # TEI serves /v1/embeddings at /embeddings too


def _encode_ids(model, ids, normalize):
    return model.encode_ids(ids, normalize=normalize)


def _rows(vectors: np.ndarray, kind: str, encoding_format: str) -> list:
    """One embedding type of every row: sentence-transformers' ``quantize_embeddings``
    (one implementation with ``SentenceTransformer.encode(precision=)``), then numbers or
    base64 of the values as little-endian float32 (what the openai client decodes, so an
    int8 row decodes to its integer values)."""
    if kind != "float":
        vectors = quantize_embeddings(vectors, kind)
    if encoding_format == "base64":
        raw = np.ascontiguousarray(vectors, dtype="<f4")
        return [base64.b64encode(v.tobytes()).decode() for v in raw]
    return list(vectors)


def encode_rows(vectors: np.ndarray, body: EmbeddingsRequest) -> list:
    """The `embedding` of each item: the vector (``embedding_type``, default float), or
    ``{type: vector}`` for ``embedding_types``."""
    if body.embedding_types is not None:
        if body.embedding_type is not None:
            raise ApiError(
                422, "validation", "give `embedding_type` or `embedding_types`, not both", param="embedding_types"
            )
        kinds = list(dict.fromkeys(body.embedding_types))
        columns = {k: _rows(vectors, k, body.encoding_format) for k in kinds}
        return [{k: columns[k][i] for k in kinds} for i in range(len(vectors))]
    return _rows(vectors, body.embedding_type or "float", body.encoding_format)


@router.post("/embeddings", summary="Create embeddings (OpenAI-compatible)")
@alias.post("/embeddings", summary="Create embeddings (OpenAI-compatible; TEI's alias of /v1/embeddings)")
async def create_embeddings(body: EmbeddingsRequest, request: Request):
    model = embedder_of(request)
    inp = body.input
    if isinstance(inp, str):
        inp = [inp]
    if inp and isinstance(inp[0], int):
        inp = [inp]
    if inp and isinstance(inp[0], list):
        check_count(request, len(inp), "input")
        vectors = await run_engine(request, len(inp), _encode_ids, model, inp, None)
        tokens = sum(len(x) for x in inp)
    else:
        vectors, tokens = await embed_texts(request, inp, normalize=None, truncate=True, return_tokens=True)
    vectors = shrink(vectors, body.dimensions, renormalize=model.normalizes)
    data = [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(encode_rows(vectors, body))]
    return json_response(
        {
            "object": "list",
            "data": data,
            "model": request.app.state.served_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def _model_card(state) -> dict:
    return {"id": state.served_name, "object": "model", "created": 0, "owned_by": "rinfer", "kind": state.kind}


def _served(request: Request) -> list:
    """The states of every served model, the default first."""
    state = request.app.state
    return [state, *(peer.state for peer in getattr(state, "peers", {}).values())]


@router.get("/models", summary="The served models and their kinds (OpenAI-compatible)")
async def list_models(request: Request):
    return {"object": "list", "data": [_model_card(s) for s in _served(request)]}


@router.get("/models/{model_id:path}", summary="One served model (OpenAI-compatible)")
async def get_model(model_id: str, request: Request):
    for state in _served(request):
        if model_id == state.served_name:
            return _model_card(state)
    raise ApiError(404, "not_found", f"The model `{model_id}` does not exist", param="model", code="model_not_found")


def _pair_logits(model, pairs, truncate):
    return np.asarray(model.pair_logits(pairs, truncate=truncate), dtype=np.float32).reshape(len(pairs), -1)[:, 0]


async def _ranked(request: Request, query: str, texts: list[str], truncate: bool | None, top_n: int | None):
    """(index, score) of `texts` by falling relevance (the sigmoid of the reranker's
    logit), the first `top_n`."""
    model = model_of(request, "reranker", "rerank")
    check_count(request, len(texts), "documents")
    pairs = [(query, t) for t in texts]
    logits = await run_engine(request, len(pairs), _pair_logits, model, pairs, truncate_of(request, truncate))
    scores = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    return [(i, float(scores[i])) for i in sorted(range(len(texts)), key=lambda i: -scores[i])[:top_n]]


def _rerank_response(request: Request, results: list[dict], version: str):
    return json_response(
        {
            "id": str(uuid.uuid4()),
            "results": results,
            "model": request.app.state.served_name,
            "meta": {"api_version": {"version": version}, "billed_units": {"search_units": 1}},
        }
    )


@router.post("/rerank", summary="Rerank documents against a query (Cohere/Jina-compatible)")
async def cohere_rerank(body: CohereRerankRequest, request: Request):
    texts = [d if isinstance(d, str) else d.text for d in body.documents]
    results = []
    for i, score in await _ranked(request, body.query, texts, body.truncate, body.top_n):
        item: dict = {"index": i, "relevance_score": score}
        if body.return_documents:
            item["document"] = {"text": texts[i]}
        results.append(item)
    return _rerank_response(request, results, "1")


@cohere_v2.post("/rerank", summary="Rerank documents against a query (Cohere v2-compatible)")
async def cohere_rerank_v2(body: CohereRerankV2Request, request: Request):
    ranked = await _ranked(request, body.query, body.documents, True, body.top_n)
    return _rerank_response(request, [{"index": i, "relevance_score": s} for i, s in ranked], "2")
