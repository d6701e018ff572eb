"""text-embeddings-inference-compatible routes: embed, tokenize, similarity (for an
embedder), rerank (for a cross-encoder) and predict (for a classifier); a route the
loaded model cannot serve answers 400."""

from __future__ import annotations

import asyncio

import numpy as np
from fastapi import APIRouter, HTTPException, Request

from ..schemas import EmbedRequest, PredictRequest, RerankRequest, SimilarityRequest, TokenizeRequest
from ..service import check_count, embed_texts, embedder_of, json_response, model_of, shrink

router = APIRouter(tags=["tei"])


@router.post("/embed", summary="Embed texts (TEI-compatible)")
async def embed(body: EmbedRequest, request: Request):
    if body.truncation_direction.lower() != "right":
        raise HTTPException(422, "truncation_direction Left is not supported; use Right")
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    vectors = await embed_texts(request, texts, normalize=body.normalize, truncate=body.truncate)
    return json_response(shrink(vectors, body.dimensions, renormalize=body.normalize))


@router.post("/tokenize", summary="Tokens of texts: id, text, special, character span (TEI-compatible)")
async def tokenize(body: TokenizeRequest, request: Request):
    model = embedder_of(request)
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    check_count(request, len(texts))
    rows = await asyncio.to_thread(model.tokens, texts)
    return json_response(
        [
            [
                {"id": i, "text": text, "special": special, "start": start, "stop": stop}
                for i, text, special, start, stop in row
                if body.add_special_tokens or not special
            ]
            for row in rows
        ]
    )


@router.post("/similarity", summary="Cosine similarity of sentences to a source (TEI-compatible)")
async def similarity(body: SimilarityRequest, request: Request):
    texts = [body.inputs.source_sentence, *body.inputs.sentences]
    v = await embed_texts(request, texts, normalize=True, truncate=True)
    return json_response((v[1:] @ v[0]).astype(np.float32))


@router.post("/rerank", summary="Rerank texts against a query (TEI-compatible)")
async def rerank(body: RerankRequest, request: Request):
    model = model_of(request, "reranker", "rerank")
    check_count(request, len(body.texts))
    ranked = await asyncio.to_thread(model.rerank, body.query, body.texts)
    out = []
    for index, score in ranked:
        if body.raw_scores:  # the logit, from the sigmoid score
            p = min(max(score, 1e-7), 1 - 1e-7)
            score = float(np.log(p / (1 - p)))
        item = {"index": index, "score": score}
        if body.return_text:
            item["text"] = body.texts[index]
        out.append(item)
    return out


@router.post("/predict", summary="Classify texts (TEI-compatible)")
async def predict(body: PredictRequest, request: Request):
    model = model_of(request, "classifier", "predict")
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    check_count(request, len(texts))
    if body.raw_scores:
        logits = await asyncio.to_thread(model.logits, texts)
        labels = model.labels
        rows = [
            sorted(({"label": labels[j], "score": float(v)} for j, v in enumerate(r)), key=lambda x: -x["score"])
            for r in logits
        ]
    else:
        preds = await asyncio.to_thread(model.predict, texts)
        rows = [[{"label": label, "score": score} for label, score in p] for p in preds]
    return rows[0] if isinstance(body.inputs, str) else rows
