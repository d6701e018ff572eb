"""The Python API: parity, shapes, zero-copy outputs, typed errors, GIL release."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import rinfer


def assert_parity(got: np.ndarray, want: np.ndarray) -> None:
    cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert cos.min() >= 0.99999, cos.min()
    assert np.abs(got - want).max() <= 1e-4


def test_parity_with_sentence_transformers(embedder, golden):
    got = embedder.encode(golden["texts"])
    assert got.shape == (len(golden["texts"]), 384) and got.dtype == np.float32
    assert got.flags.c_contiguous
    assert_parity(got, golden["vectors"])
    for i, ids in enumerate(embedder.tokenize(golden["texts"])):
        assert ids.tolist() == golden["ids"][i]
    from_ids = embedder.encode_ids([np.asarray(x, dtype=np.int64) for x in golden["ids"]])
    assert_parity(from_ids, golden["vectors"])
    from_lists = embedder.encode_ids(golden["ids"][:3])
    assert_parity(from_lists, golden["vectors"][:3])


def test_single_string_empty_list_and_long_text(embedder, golden):
    one = embedder.encode(golden["texts"][4])
    assert one.shape == (384,)
    np.testing.assert_allclose(one, golden["vectors"][4], atol=1e-4)
    assert embedder.encode([]).shape == (0, 384)
    long = "word " * 5000
    assert embedder.encode(long).shape == (384,)
    with pytest.raises(rinfer.InvalidInputError, match="limit of 256"):
        embedder.encode(["ok", long], truncate=False)
    assert abs(np.linalg.norm(embedder.encode("x")) - 1) < 1e-5
    assert abs(np.linalg.norm(embedder.encode("hello there", normalize=False))) > 1.5


def test_properties_and_build_info(embedder, model_dir):
    assert embedder.dim == 384 and embedder.max_seq_length == 256 and embedder.normalizes
    info = embedder.model_info
    assert info["dim"] == 384 and info["dtype"] == "f32" and info["path"] == str(model_dir)
    b = rinfer.build_info()
    assert b["version"] == rinfer.__version__
    assert b["isa"] in b["supported_isas"] and b["threads"] >= 1 and "python" in b["features"]
    assert "Embedder(" in repr(embedder)


def test_output_is_not_a_copy_and_owns_no_python_buffer(embedder):
    out = embedder.encode(["a", "b"])
    # numpy wraps the Rust allocation: no numpy-owned data, a capsule keeps it alive.
    assert not out.flags.owndata
    assert out.base is not None and not isinstance(out.base, np.ndarray)
    assert out.flags.writeable


def test_no_python_list_is_built_for_many_texts(embedder):
    texts = [f"text number {i}" for i in range(10_000)]
    out = embedder.encode(texts)
    assert isinstance(out, np.ndarray) and out.shape == (10_000, 384)
    assert not out.flags.owndata


def test_errors_are_typed(embedder, tmp_path, tiny_dir):
    with pytest.raises(FileNotFoundError):
        rinfer.Embedder.load(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in (tiny_dir / "gelu-mean").iterdir():
        if f.is_file():
            (bad / f.name).write_bytes(f.read_bytes())
    (bad / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(rinfer.ModelLoadError, match="model.safetensors"):
        rinfer.Embedder.load(bad)
    with pytest.raises(TypeError, match="texts"):
        embedder.encode(42)
    with pytest.raises(TypeError, match="only str"):
        embedder.encode(["ok", 3])
    with pytest.raises(rinfer.InvalidInputError):
        embedder.encode_ids([[101, 10**9, 102]])
    with pytest.raises(rinfer.InvalidInputError):
        embedder.encode_ids([[101, -1, 102]])
    with pytest.raises(rinfer.InvalidInputError, match="dtype"):
        rinfer.Embedder.load(tiny_dir / "gelu-mean", dtype="int3")
    with pytest.raises(rinfer.UnsupportedError):
        rinfer.Reranker.load(tiny_dir / "classifier")
    assert issubclass(rinfer.OverloadedError, rinfer.RinferError)


def test_classifier_and_reranker(tiny_dir):
    import json

    clf = rinfer.Classifier.load(tiny_dir / "classifier")
    g = json.loads((tiny_dir / "classifier/golden.json").read_text())
    assert clf.labels == g["labels"]
    np.testing.assert_allclose(clf.logits(g["texts"]), np.array(g["logits"]), atol=1e-4)
    preds = clf.predict(g["texts"])
    assert len(preds) == len(g["texts"]) and abs(sum(s for _, s in preds[0]) - 1) < 1e-5
    rr = rinfer.Reranker.load(tiny_dir / "reranker")
    g = json.loads((tiny_dir / "reranker/golden.json").read_text())
    ranked = rr.rerank(g["query"], g["texts"], top_k=3)
    want = np.argsort(-np.array(g["logits"])[:, 0])[:3]
    assert [i for i, _ in ranked] == want.tolist()


def test_gil_is_released_during_encode(embedder):
    texts = ["a fairly long sentence to keep the engine busy for a while " * 8] * 64
    ticks = 0
    stop = threading.Event()

    def counter():
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.0005)

    t = threading.Thread(target=counter)
    t.start()
    time.sleep(0.01)
    before = ticks
    start = time.perf_counter()
    embedder.encode(texts)
    elapsed = time.perf_counter() - start
    during = ticks - before
    stop.set()
    t.join()
    # With the GIL held the counter could not move while encode runs.
    assert elapsed > 0.02 and during >= 5, (elapsed, during)


def test_threads_share_one_embedder(embedder):
    texts = [f"sentence {i} about topic {i % 7}" for i in range(20)]
    want = embedder.encode(texts)
    errors = []

    def work(k):
        for j in range(100):
            i = (k * 100 + j) % len(texts)
            got = embedder.encode(texts[i])
            if np.abs(got - want[i]).max() > 1e-6:
                errors.append((k, j))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_encode_after_fork(embedder):
    want = embedder.encode(["before the fork"])
    embedder.encode_batched(["start the batcher thread"])
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            got = embedder.encode(["before the fork"])
            got2 = embedder.encode_batched(["before the fork"])
            code = 0 if np.abs(got - want).max() < 1e-6 and np.abs(got2 - want).max() < 1e-6 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_set_num_threads(embedder):
    rinfer.set_num_threads(1)
    assert rinfer.build_info()["threads"] == 1
    a = embedder.encode(["threads"])
    rinfer.set_num_threads(2)
    assert rinfer.build_info()["threads"] == 2
    np.testing.assert_array_equal(a, embedder.encode(["threads"]))
    with pytest.raises(rinfer.InvalidInputError):
        rinfer.set_num_threads(0)
