"""The official `openai` client against a real `rinfer serve` on loopback: embeddings,
an error in OpenAI's shape, and 429 on overload (refused without retries, retried to
success by the client's own back-off)."""

from __future__ import annotations

import threading
import time

import httpx  # in the test lock (requirements-dev.txt): missing is a failure, not a skip
import numpy as np
import openai
import pytest
from live_server import serve


@pytest.fixture(scope="module")
def server(model_dir):
    extra = ["--served-model-name", "minilm", "--max-queue", "1", "--max-wait-ms", "1500"]
    with serve(model_dir, *extra) as base:
        yield base


def test_openai_client_embeddings_and_errors(server, golden):
    oc = openai.OpenAI(api_key="unused", base_url=f"{server}/v1", max_retries=0)
    resp = oc.embeddings.create(model="text-embedding-3-small", input=golden["texts"][:3])
    assert resp.model == "minilm"  # the served name, not the request's
    got = np.array([d.embedding for d in resp.data], dtype=np.float32)
    np.testing.assert_allclose(got, golden["vectors"][:3], atol=1e-4)
    assert [m.id for m in oc.models.list()] == ["minilm"] and oc.models.retrieve("minilm").id == "minilm"
    with pytest.raises(openai.NotFoundError) as e:
        oc.models.retrieve("gpt-4")
    assert e.value.code == "model_not_found" and e.value.param == "model"
    with pytest.raises(openai.UnprocessableEntityError) as e:
        oc.embeddings.create(model="minilm", input="x", extra_body={"temperature": 0})
    assert e.value.type == "invalid_request_error" and e.value.param == "temperature"
    assert e.value.request_id  # X-Request-ID


def test_openai_client_gets_429_when_overloaded_and_retries_to_success(server):
    """The queue holds one request, which waits 1.5 s for company: a second request
    meanwhile is refused with 429; the client's own retries (Retry-After) succeed."""
    first = threading.Thread(target=lambda: httpx.post(f"{server}/embed", json={"inputs": "first"}, timeout=30))
    first.start()
    time.sleep(0.3)
    try:
        quick = openai.OpenAI(api_key="unused", base_url=f"{server}/v1", max_retries=0)
        with pytest.raises(openai.RateLimitError) as e:
            quick.embeddings.create(model="minilm", input="second")
        assert e.value.code == "rate_limit_exceeded" and e.value.response.headers["retry-after"] == "1"
        patient = openai.OpenAI(api_key="unused", base_url=f"{server}/v1", max_retries=5)
        assert len(patient.embeddings.create(model="minilm", input="third").data) == 1
    finally:
        first.join()
