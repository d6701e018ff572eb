"""Background jobs: submit, poll, stream results, cancel, and resume after a restart."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from rinfer.server import Settings, create_app
from rinfer.server.jobs import RUNNING, SQLiteJobStore


def wait_done(client, job_id: str, timeout: float = 60.0) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        st = client.get(f"/v1/jobs/{job_id}").json()
        if st["status"] not in ("queued", "running"):
            return st
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {st}")


@pytest.fixture()
def settings(model_dir, tmp_path):
    return Settings(model_path=str(model_dir), job_store_url=f"sqlite:///{tmp_path / 'jobs.db'}", max_job_inputs=5000)


def test_job_round_trip_jsonl_and_npy(settings, embedder):
    texts = [f"background text {i} about {i % 13}" for i in range(700)]
    want = embedder.encode(texts)
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/jobs", json={"inputs": texts})
        assert r.status_code == 202 and r.headers["Location"] == f"/v1/jobs/{r.json()['id']}"
        jid = r.json()["id"]
        st = wait_done(c, jid)
        assert st["status"] == "succeeded" and st["done"] == 700 and st["progress"] == 1.0
        lines = c.get(f"/v1/jobs/{jid}/result").text.splitlines()
        got = np.array([json.loads(x) for x in lines], dtype=np.float32)
        np.testing.assert_allclose(got, want, atol=1e-6)
        raw = c.get(f"/v1/jobs/{jid}/result?format=npy").content
        import io

        arr = np.load(io.BytesIO(raw))
        assert arr.shape == (700, 384)
        np.testing.assert_array_equal(arr, got)
        assert c.get("/v1/jobs/nope").status_code == 404
        assert c.post("/v1/jobs", json={"inputs": ["x"] * 5001}).status_code == 413
        assert c.post("/v1/jobs", json={"inputs": []}).status_code == 422


def test_failed_and_cancelled_jobs(settings):
    with TestClient(create_app(settings)) as c:
        jid = c.post("/v1/jobs", json={"inputs": ["ok", "word " * 400], "truncate": False}).json()["id"]
        st = wait_done(c, jid)
        assert st["status"] == "failed" and "limit of 256" in st["error"]
        assert c.get(f"/v1/jobs/{jid}/result").status_code == 409
        # Cancel a large job right after submitting it: it stops, and stays stopped.
        big = [f"a longer text number {i} for the cancellation test" for i in range(5000)]
        jid = c.post("/v1/jobs", json={"inputs": big}).json()["id"]
        assert c.delete(f"/v1/jobs/{jid}").json()["status"] == "cancelled"
        time.sleep(0.5)
        st = c.get(f"/v1/jobs/{jid}").json()
        assert st["status"] == "cancelled" and st["done"] < 5000
        assert c.get(f"/v1/jobs/{jid}/result").status_code == 409


def test_accepted_jobs_survive_a_restart(settings, embedder):
    path = settings.job_store_url[len("sqlite:///") :]
    texts = [f"queued before the restart {i}" for i in range(300)]
    store = SQLiteJobStore(path)
    queued = store.create(texts, None, True)
    # A job that was halfway through when the process stopped.
    half = store.create(texts, None, True)
    store.set_status(half.id, RUNNING)
    store.save_rows(half.id, 0, embedder.encode(texts[:100]))
    store.close()
    with TestClient(create_app(settings)) as c:
        for jid in (queued.id, half.id):
            st = wait_done(c, jid)
            assert st["status"] == "succeeded" and st["done"] == 300
            got = np.array([json.loads(x) for x in c.get(f"/v1/jobs/{jid}/result").text.splitlines()])
            np.testing.assert_allclose(got, embedder.encode(texts), atol=1e-6)
