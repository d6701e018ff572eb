"""Holes found by review, each with a test that failed before its fix: body limits
enforced while the body streams in (chunked or understated lengths)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from rinfer.server import Settings, create_app


@pytest.fixture(scope="module")
def client(model_dir):
    with TestClient(create_app(Settings(model_path=str(model_dir), max_body_bytes=2048))) as c:
        yield c


def chunks(n: int):
    yield b'{"inputs": "'
    for _ in range(n):
        yield b"x" * 256
    yield b'"}'


@pytest.mark.parametrize("path", ["/embed", "/v1/embeddings", "/tokenize"])
def test_a_chunked_body_past_the_limit_is_413(client, path):
    r = client.post(path, content=chunks(12), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    r = client.post(path, content=chunks(2), headers={"content-type": "application/json"})
    assert r.status_code != 413


def test_a_declared_length_past_the_limit_is_413(client):
    r = client.post(
        "/embed", content=b'{"inputs": "' + b"x" * 4000 + b'"}', headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
