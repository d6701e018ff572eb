"""text-embeddings-inference-compatible routes: embed, tokenize, similarity (for an
embedder), rerank (for a cross-encoder) and predict (for a classifier, or a
cross-encoder on pairs); a route the loaded model cannot serve answers 424, as TEI's
do. Every engine call goes through the admission queue or the batcher (queue limit,
deadline, disconnect drop, metrics)."""

from __future__ import annotations

import time

import numpy as np
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

import rinfer

from ..decode import Decoder
from ..errors import ApiError, WrongModelError
from ..schemas import (
    DecodeRequest,
    EmbedAllRequest,
    EmbedRequest,
    EmbedSparseRequest,
    PredictRequest,
    RerankRequest,
    SimilarityRequest,
    TokenizeRequest,
)
from ..service import (
    _left_truncated,
    check_count,
    embed_request,
    embed_texts,
    embedder_of,
    json_response,
    model_of,
    prompt_text,
    run_engine,
    settings_of,
    shrink,
    timing_headers,
    truncate_of,
)

router = APIRouter(tags=["tei"])


def _split_inputs(inputs) -> tuple[list, bool]:
    """TEI's Input: a text, token ids, or a batch of both; (items, whether ids occur)."""
    if isinstance(inputs, str):
        return [inputs], False
    if inputs and isinstance(inputs[0], int):
        return [inputs], True
    return list(inputs), any(isinstance(x, list) for x in inputs)


def _ids_of(model, items: list, truncate: bool, left: bool) -> list[np.ndarray]:
    """Token ids of texts (tokenised, truncated as asked) and of token-id inputs (cut
    to the model's limit from the side asked when truncating, else refused when too
    long)."""
    limit = model.max_seq_length
    ids = []
    for i, x in enumerate(items):
        if isinstance(x, str):
            ids.append(_left_truncated(model, x) if left and truncate else model.tokenize([x], truncate=truncate)[0])
            continue
        if len(x) > limit:
            if not truncate:
                raise rinfer.InputTooLongError(
                    f"inputs[{i}]: {len(x)} token ids, more than the model's limit of {limit}"
                )
            x = x[len(x) - limit :] if left else x[:limit]
        if not x:
            raise ApiError(422, "validation", f"inputs[{i}]: no token ids", param="inputs")
        ids.append(np.asarray(x, dtype=np.uint32))
    return ids


def _encode_mixed(model, items: list, normalize: bool | None, truncate: bool, left: bool):
    """Texts and token ids in one call: pooled vectors and the tokens they took."""
    ids = _ids_of(model, items, truncate, left)
    return model.encode_ids(ids, normalize=normalize), sum(len(x) for x in ids)


def _token_embeddings(model, items: list, truncate: bool, left: bool):
    """Every token's vector of texts and token ids, and the tokens they took."""
    ids = _ids_of(model, items, truncate, left)
    return model.encode_ids_tokens(ids), sum(len(x) for x in ids)


@router.post("/embed", summary="Embed texts or token ids (TEI-compatible)")
async def embed(body: EmbedRequest, request: Request):
    start = time.perf_counter()
    items, has_ids = _split_inputs(body.inputs)
    truncate = settings_of(request).auto_truncate if body.truncate is None else body.truncate
    left = body.truncation_direction[0] == "L" or body.truncation_direction[0] == "l"
    if has_ids:
        if body.prompt_name is not None:
            raise ApiError(422, "validation", "prompt_name applies to texts, not token ids", param="prompt_name")
        model = embedder_of(request)
        check_count(request, len(items))
        vectors, tokens = await run_engine(
            request, len(items), _encode_mixed, model, items, body.normalize, truncate, left
        )
    elif body.prompt_name is None and not left and request.app.state.settings.default_prompt_name is None:
        vectors, tokens = await embed_texts(
            request, items, normalize=body.normalize, truncate=truncate, return_tokens=True
        )
    else:
        vectors, tokens = await embed_request(
            request,
            items,
            normalize=body.normalize,
            truncate=truncate,
            left=left,
            prompt_name=body.prompt_name,
            return_tokens=True,
        )
    chars = sum(len(x) for x in items if isinstance(x, str))
    return json_response(
        shrink(vectors, body.dimensions, renormalize=body.normalize),
        headers=timing_headers(request, start, tokens, chars),
    )


@router.post("/embed_all", summary="Every token's vector, the encoder's last hidden state (TEI-compatible)")
async def embed_all(body: EmbedAllRequest, request: Request):
    start = time.perf_counter()
    model = embedder_of(request)
    if model.is_sparse:
        raise WrongModelError("/embed_all needs a dense embedding model; this one is sparse (use /embed_sparse)")
    items, has_ids = _split_inputs(body.inputs)
    if has_ids and body.prompt_name is not None:
        raise ApiError(422, "validation", "prompt_name applies to texts, not token ids", param="prompt_name")
    prompt = prompt_text(request, model, body.prompt_name) if not has_ids else None
    if prompt:
        items = [prompt + x for x in items]
    truncate = settings_of(request).auto_truncate if body.truncate is None else body.truncate
    left = body.truncation_direction[0] in "Ll"
    check_count(request, len(items))
    rows, tokens = await run_engine(request, len(items), _token_embeddings, model, items, truncate, left)
    chars = sum(len(x) for x in items if isinstance(x, str))
    return json_response(rows, headers=timing_headers(request, start, tokens, chars))


def _decoder(request: Request) -> Decoder:
    state = request.app.state
    if getattr(state, "decoder", None) is None:
        state.decoder = Decoder(state.model_path)
    return state.decoder


@router.post("/decode", summary="Token ids back to text (TEI-compatible)")
async def decode(body: DecodeRequest, request: Request):
    if not request.app.state.ready:
        raise ApiError(503, "unhealthy", "the model is not loaded yet")
    batch = body.ids if body.ids and isinstance(body.ids[0], list) else [body.ids]
    check_count(request, len(batch), "ids")
    dec = _decoder(request)
    return json_response([dec.decode(ids, body.skip_special_tokens) for ids in batch])


def _tokens(model, texts: list[str]):
    return model.tokens(texts)


@router.post("/tokenize", summary="Tokens of texts: id, text, special, character span (TEI-compatible)")
async def tokenize(body: TokenizeRequest, request: Request):
    model = embedder_of(request)
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    check_count(request, len(texts))
    prompt = prompt_text(request, model, body.prompt_name)
    if prompt:
        texts = [prompt + t for t in texts]
    rows = await run_engine(request, len(texts), _tokens, model, texts)
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
    p = body.parameters
    v = await embed_request(
        request,
        texts,
        normalize=True,
        truncate=truncate_of(request, p.truncate if p else None),
        left=bool(p and p.truncation_direction.lower() == "left"),
        prompt_name=p.prompt_name if p else None,
    )
    return json_response((v[1:] @ v[0]).astype(np.float32))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x.astype(np.float64) - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _no_left(direction: str) -> None:
    if direction.lower() == "left":
        raise ApiError(
            422,
            "validation",
            "truncation_direction Left is not supported for cross-encoders and classifiers; use Right",
            param="truncation_direction",
        )


@router.post("/rerank", summary="Rerank texts against a query (TEI-compatible)")
async def rerank(body: RerankRequest, request: Request):
    model = model_of(request, "reranker", "rerank")
    _no_left(body.truncation_direction)
    if not body.texts:
        raise ApiError(400, "empty", "`texts` cannot be empty", param="texts")
    check_count(request, len(body.texts), "texts")
    pairs = [(body.query, t) for t in body.texts]
    truncate = truncate_of(request, body.truncate)
    logits = await run_engine(request, len(pairs), model.pair_logits, pairs, truncate=truncate)
    raw = np.asarray(logits, dtype=np.float32).reshape(len(pairs), -1)[:, 0]
    scores = raw if body.raw_scores else _sigmoid(raw)
    out = []
    for index in sorted(range(len(pairs)), key=lambda i: -scores[i]):
        item = {"index": index, "score": float(scores[index])}
        if body.return_text:
            item["text"] = body.texts[index]
        out.append(item)
    return json_response(out)


def _predict_inputs(inputs) -> tuple[list[str | tuple[str, str]], bool]:
    """TEI's PredictInput: a text, a pair [a, b], or a batch [[a], [a, b], ...];
    returns the sequences and whether the input was a batch."""
    if isinstance(inputs, str):
        return [inputs], False
    if not inputs:
        raise ApiError(400, "empty", "`inputs` cannot be empty", param="inputs")
    if isinstance(inputs[0], str):
        if len(inputs) == 1:
            return [inputs[0]], False
        if len(inputs) == 2:
            return [(inputs[0], inputs[1])], False
        # Not TEI (which refuses it): three or more strings are a batch of single texts.
        return list(inputs), True
    seqs: list[str | tuple[str, str]] = []
    for i, item in enumerate(inputs):
        if len(item) == 1:
            seqs.append(item[0])
        elif len(item) == 2:
            seqs.append((item[0], item[1]))
        else:
            raise ApiError(
                422,
                "validation",
                f"inputs[{i}]: {len(item)} strings; each item of a batch is [string] or [string, string]",
                param="inputs",
            )
    return seqs, True


def _logits_of(model, seqs: list, truncate: bool) -> np.ndarray:
    """Raw logits of texts and pairs, in order (one engine call per kind)."""
    singles = [i for i, s in enumerate(seqs) if isinstance(s, str)]
    pairs = [i for i, s in enumerate(seqs) if not isinstance(s, str)]
    rows: list = [None] * len(seqs)
    if singles:
        if not hasattr(model, "logits"):
            raise ApiError(422, "validation", "this cross-encoder scores pairs [string, string], not single texts")
        out = np.asarray(model.logits([seqs[i] for i in singles], truncate=truncate))
        for j, i in enumerate(singles):
            rows[i] = out[j]
    if pairs:
        out = np.asarray(model.pair_logits([seqs[i] for i in pairs], truncate=truncate))
        for j, i in enumerate(pairs):
            rows[i] = out[j]
    return np.stack(rows).reshape(len(seqs), -1)


@router.post("/predict", summary="Classify texts or pairs of texts (TEI-compatible)")
async def predict(body: PredictRequest, request: Request):
    state = request.app.state
    if state.ready and state.kind == "reranker":
        model = state.reranker
    else:
        model = model_of(request, "classifier", "predict")
    _no_left(body.truncation_direction)
    seqs, batch = _predict_inputs(body.inputs)
    check_count(request, len(seqs))
    if state.kind == "reranker" and any(isinstance(s, str) for s in seqs):
        raise WrongModelError("the loaded model is a reranker; it scores pairs [string, string], not single texts")
    params = body.parameters
    apply = params.function_to_apply if params else None
    if body.raw_scores and apply not in (None, "none"):
        raise ApiError(
            422,
            "validation",
            f"raw_scores asks for the logits, parameters.function_to_apply for {apply}; give one of them",
            param="parameters.function_to_apply",
        )
    logits = await run_engine(request, len(seqs), _logits_of, model, seqs, truncate_of(request, body.truncate))
    if body.raw_scores or apply == "none":
        scores = logits.astype(np.float64)
    elif apply == "sigmoid" or (apply is None and logits.shape[1] == 1):
        scores = _sigmoid(logits)
    else:
        scores = _softmax(logits)
    labels = state.labels
    top_k = params.top_k if params else None
    rows = [
        sorted(({"label": labels[j], "score": float(v)} for j, v in enumerate(r)), key=lambda x: -x["score"])[:top_k]
        for r in scores
    ]
    return json_response(rows if batch else rows[0])


# SageMaker's (and TEI's) entry points: the route of the loaded model's kind.
sagemaker = APIRouter(tags=["sagemaker"])


def _by_kind() -> dict:
    from .sparse import embed_sparse

    return {
        "embedder": (EmbedRequest, embed),
        "sparse": (EmbedSparseRequest, embed_sparse),
        "classifier": (PredictRequest, predict),
        "reranker": (RerankRequest, rerank),
    }


@sagemaker.post("/invocations", summary="SageMaker: /embed, /embed_sparse, /predict or /rerank by the model's kind")
@sagemaker.post("/", summary="As /invocations (TEI's root route)")
async def invocations(request: Request):
    state = request.app.state
    if not state.ready:
        raise ApiError(503, "unhealthy", "the model is not loaded yet")
    routes = _by_kind()
    if state.kind not in routes:  # a generator: a 424, not a KeyError's 500 (found by schemathesis)
        raise WrongModelError(
            f"the loaded model is a {state.kind}; /invocations serves embedders, sparse models, classifiers "
            "and rerankers (text generation: /v1/chat/completions, /v1/completions)"
        )
    schema, route = routes[state.kind]
    try:
        body = schema.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    return await route(body, request)
