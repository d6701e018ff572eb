"""text-embeddings-inference-compatible routes: embed, tokenize, similarity, and
rerank/predict (which answer 400 when the loaded model cannot do them)."""

from __future__ import annotations

import asyncio

import numpy as np
from fastapi import APIRouter, HTTPException, Request

import rinfer

from ..schemas import EmbedRequest, PredictRequest, RerankRequest, SimilarityRequest, TokenizeRequest
from ..service import check_count, embed_texts, embedder_of, json_response, shrink

router = APIRouter(tags=["tei"])


@router.post("/embed", summary="Embed texts (TEI-compatible)")
async def embed(body: EmbedRequest, request: Request):
    if body.truncation_direction.lower() != "right":
        raise HTTPException(422, "truncation_direction Left is not supported; use Right")
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    vectors = await embed_texts(request, texts, normalize=body.normalize, truncate=body.truncate)
    return json_response(shrink(vectors, body.dimensions, renormalize=body.normalize))


@router.post("/tokenize", summary="Token ids of texts (TEI-compatible)")
async def tokenize(body: TokenizeRequest, request: Request):
    model = embedder_of(request)
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    check_count(request, len(texts))
    ids = await asyncio.to_thread(model.tokenize, texts)
    out = []
    for row in ids:
        row = row.tolist()
        if not body.add_special_tokens and len(row) >= 2:
            row = row[1:-1]
        out.append([{"id": t} for t in row])
    return json_response(out)


@router.post("/similarity", summary="Cosine similarity of sentences to a source (TEI-compatible)")
async def similarity(body: SimilarityRequest, request: Request):
    texts = [body.inputs.source_sentence, *body.inputs.sentences]
    v = await embed_texts(request, texts, normalize=True, truncate=True)
    return json_response((v[1:] @ v[0]).astype(np.float32))


def _unsupported(what: str):
    raise rinfer.UnsupportedError(
        f"the loaded model is a sentence embedder; {what} needs a sequence-classification model"
    )


@router.post("/rerank", summary="Rerank texts against a query (TEI-compatible)")
async def rerank(body: RerankRequest, request: Request):
    embedder_of(request)
    _unsupported("rerank")


@router.post("/predict", summary="Classify texts (TEI-compatible)")
async def predict(body: PredictRequest, request: Request):
    embedder_of(request)
    _unsupported("predict")
