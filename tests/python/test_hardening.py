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


def test_info_and_metrics_need_the_key_probes_do_not(model_dir):
    s = Settings(model_path=str(model_dir), api_key="s3cret")
    with TestClient(create_app(s)) as c:
        for path in ("/health", "/ready", "/ping"):
            assert c.get(path).status_code == 200, path
        for path in ("/info", "/metrics"):
            assert c.get(path).status_code == 401, path
            ok = c.get(path, headers={"authorization": "Bearer s3cret"})
            assert ok.status_code == 200, path
        info = c.get("/info", headers={"authorization": "Bearer s3cret"}).text
        assert str(model_dir) not in info and "model_path" not in info


def test_ctrl_c_interrupts_a_long_encode_as_keyboard_interrupt(model_dir):
    import signal
    import threading
    import time

    import rinfer

    model = rinfer.Embedder.load(model_dir)
    texts = ["a sentence of a few words to embed, again and again"] * 20000
    fired = []

    def interrupt():
        fired.append(time.perf_counter())
        signal.raise_signal(signal.SIGINT)

    timer = threading.Timer(0.3, interrupt)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        model.encode(texts, batch_size=128)
    waited = time.perf_counter() - fired[0]
    assert waited < 1.0, f"KeyboardInterrupt came {waited:.3f} s after Ctrl-C"
    # The model still works afterwards.
    assert model.encode(["still here"]).shape == (1, model.dim)
