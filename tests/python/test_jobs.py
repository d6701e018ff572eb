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


def test_jobs_are_visible_only_with_the_key_that_created_them(model_dir, tmp_path):
    """Status, result, cancel and listing: another key gets 404 (as for a job that does
    not exist), never 403; the store keeps the key's SHA-256, never the key."""
    import hashlib

    db = tmp_path / "jobs.db"
    s = Settings(model_path=str(model_dir), job_store_url=f"sqlite:///{db}", api_key="alice-key,bob-key")
    alice = {"Authorization": "Bearer alice-key"}
    bob = {"Authorization": "Bearer bob-key"}
    with TestClient(create_app(s)) as c:
        assert c.post("/v1/jobs", json={"inputs": ["x"]}).status_code == 401
        mine = c.post("/v1/jobs", json={"inputs": ["one", "two"]}, headers=alice).json()["id"]
        theirs = c.post("/v1/jobs", json={"inputs": ["three"]}, headers=bob).json()["id"]
        assert wait_done_with(c, mine, alice)["status"] == "succeeded"
        for path in (f"/v1/jobs/{mine}", f"/v1/jobs/{mine}/result", f"/v1/jobs/{mine}/result?format=npy"):
            assert c.get(path, headers=alice).status_code == 200, path
            r = c.get(path, headers=bob)
            missing = c.get(path.replace(mine, "f" * 32), headers=bob)  # a job that does not exist
            assert r.status_code == missing.status_code == 404
            assert r.text == missing.text.replace("f" * 32, mine)  # the same answer, word for word
            assert c.get(path).status_code == 401
        assert c.delete(f"/v1/jobs/{mine}", headers=bob).status_code == 404
        assert c.get(f"/v1/jobs/{mine}", headers=alice).json()["status"] == "succeeded"  # bob's cancel did nothing
        assert [j["id"] for j in c.get("/v1/jobs", headers=alice).json()["data"]] == [mine]
        assert [j["id"] for j in c.get("/v1/jobs", headers=bob).json()["data"]] == [theirs]
        assert c.delete(f"/v1/jobs/{theirs}", headers=bob).status_code == 200
        assert "owner" not in c.get(f"/v1/jobs/{mine}", headers=alice).json()
    store = SQLiteJobStore(str(db))
    assert store.get(mine).owner == hashlib.sha256(b"alice-key").hexdigest()
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("jobs.db"))
    assert b"alice-key" not in raw and b"bob-key" not in raw


def wait_done_with(client, job_id: str, headers: dict, timeout: float = 60.0) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        st = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        if st["status"] not in ("queued", "running"):
            return st
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {st}")


def test_a_job_store_from_before_owners_is_migrated_and_its_jobs_stay_readable(model_dir, tmp_path, embedder):
    """A SQLite file of the old schema (no owner column) opens: the column is added,
    its jobs run and are seen by any caller the server lets in; a keyed job stays its key's."""
    import sqlite3

    db = tmp_path / "old.db"
    old = sqlite3.connect(db)
    old.executescript(
        """
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY, status TEXT NOT NULL, total INTEGER NOT NULL,
            done INTEGER NOT NULL, normalize INTEGER, truncate INTEGER NOT NULL,
            error TEXT, created REAL NOT NULL, updated REAL NOT NULL);
        CREATE TABLE job_inputs (job_id TEXT NOT NULL, idx INTEGER NOT NULL, text TEXT NOT NULL,
            PRIMARY KEY (job_id, idx));
        CREATE TABLE job_rows (job_id TEXT NOT NULL, idx INTEGER NOT NULL, vector BLOB NOT NULL,
            PRIMARY KEY (job_id, idx));
        INSERT INTO jobs VALUES ('oldjob', 'queued', 2, 0, NULL, 1, NULL, 1.0, 1.0);
        INSERT INTO job_inputs VALUES ('oldjob', 0, 'first old text'), ('oldjob', 1, 'second old text');
        """
    )
    old.commit()
    old.close()
    s = Settings(model_path=str(model_dir), job_store_url=f"sqlite:///{db}", api_key="k1,k2")
    with TestClient(create_app(s)) as c:
        k1, k2 = {"Authorization": "Bearer k1"}, {"Authorization": "Bearer k2"}
        assert wait_done_with(c, "oldjob", k1)["status"] == "succeeded"
        for key in (k1, k2):
            lines = c.get("/v1/jobs/oldjob/result", headers=key).text.splitlines()
            got = np.array([json.loads(x) for x in lines], dtype=np.float32)
            np.testing.assert_allclose(got, embedder.encode(["first old text", "second old text"]), atol=1e-6)
        new = c.post("/v1/jobs", json={"inputs": ["new"]}, headers=k1).json()["id"]
        assert [j["id"] for j in c.get("/v1/jobs", headers=k2).json()["data"]] == ["oldjob"]
        assert c.get(f"/v1/jobs/{new}", headers=k2).status_code == 404
    # The same file served without keys: the keyed job is not shown to callers without a key.
    with TestClient(create_app(s.model_copy(update={"api_key": [], "api_key_file": None}))) as c:
        assert c.get("/v1/jobs/oldjob").status_code == 200
        assert c.get(f"/v1/jobs/{new}").status_code == 404
        assert [j["id"] for j in c.get("/v1/jobs").json()["data"]] == ["oldjob"]
