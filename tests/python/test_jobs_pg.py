"""The PostgreSQL job store against a real PostgreSQL started here (initdb + pg_ctl in a
temporary folder, on loopback): claims with SKIP LOCKED, fenced saves, lease takeover,
large results in the object store, the HTTP API on it, and two server processes sharing
one queue with one of them SIGKILLed mid-job."""

from __future__ import annotations

import glob
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import numpy as np
import pytest

if not os.environ.get("RINFER_SERVICE_TESTS"):
    pytest.skip(
        "needs a real PostgreSQL: run by scripts/test_services.sh (or set RINFER_SERVICE_TESTS=1)",
        allow_module_level=True,
    )
psycopg = pytest.importorskip(
    "psycopg", reason="psycopg is not installed (pip install -r requirements-pg.txt; scripts/test_services.sh does)"
)
from rinfer.server.jobs import SUCCEEDED, LeaseLost
from rinfer.server.jobstore_pg import LocalObjectStore, PostgresJobStore

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(os.path.realpath(initdb)) if initdb else None


@pytest.fixture(scope="module")
def pg_server():
    """A PostgreSQL server of our own, on a free loopback port; stopped at the end."""
    pgbin = _pg_bin()
    if pgbin is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; scripts/test_services.sh does)")
    as_root = os.geteuid() == 0
    run = ["runuser", "-u", "postgres", "--"] if as_root else []
    folder = tempfile.mkdtemp(prefix="rinfer-pg-")
    if as_root:
        shutil.chown(folder, "postgres")
    port = _free_port()
    data = os.path.join(folder, "data")
    subprocess.run(
        [*run, f"{pgbin}/initdb", "-D", data, "-A", "trust", "-U", "rinfer", "-N"],
        check=True,
        capture_output=True,
    )
    opts = f"-k {folder} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
    subprocess.run(
        [*run, f"{pgbin}/pg_ctl", "-D", data, "-o", opts, "-l", f"{folder}/log", "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://rinfer@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*run, f"{pgbin}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"], check=False, capture_output=True
        )
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture()
def pg_url(pg_server):
    """A fresh database for each test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{pg_server}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield f"{pg_server}/{name}"


def rows_of(store, job_id, total):
    return np.frombuffer(b"".join(store.rows(job_id, 0, total)), dtype="<f4").reshape(total, -1)


def test_claims_skip_locked_and_lease_takeover_is_fenced(pg_url, tmp_path):
    a = PostgresJobStore(pg_url, lease_s=0.5, results=str(tmp_path))
    b = PostgresJobStore(pg_url, lease_s=0.5, results=str(tmp_path))
    try:
        vecs = np.arange(10 * 4, dtype=np.float32).reshape(10, 4)
        job = a.create([f"t{i}" for i in range(10)], None, True)
        got = a.claim()
        assert got.id == job.id and got.status == "running" and got.done == 0
        assert b.claim() is None  # held: B neither takes it nor waits for it
        assert a.texts(job.id, 0, 4) == ["t0", "t1", "t2", "t3"]
        a.save_rows(job.id, 0, vecs[:4])
        assert b.get(job.id).done == 4  # progress seen from any replica
        time.sleep(0.7)  # A stops renewing: its lease expires
        taken = b.claim()
        assert taken.id == job.id and taken.done == 4
        with pytest.raises(LeaseLost):  # A wakes up late: its chunk is refused, not stored twice
            a.save_rows(job.id, 4, vecs[4:8] + 1000)
        assert not a.heartbeat(job.id) and b.heartbeat(job.id)
        b.save_rows(job.id, 4, vecs[4:10])
        with pytest.raises(LeaseLost):
            a.set_status(job.id, SUCCEEDED)
        b.set_status(job.id, SUCCEEDED)
        assert a.get(job.id).status == "succeeded"
        np.testing.assert_array_equal(rows_of(a, job.id, 10), vecs)
        with a.pool.connection() as conn:
            n, distinct, claims = conn.execute(
                "SELECT count(*), count(DISTINCT idx), (SELECT claims FROM rinfer_jobs WHERE id = %s) "
                "FROM rinfer_job_rows WHERE job_id = %s",
                (job.id, job.id),
            ).fetchone()
        assert (n, distinct, claims) == (10, 10, 2)
    finally:
        a.close()
        b.close()


def test_concurrent_claims_never_share_a_job(pg_url, tmp_path):
    stores = [PostgresJobStore(pg_url, lease_s=60, results=str(tmp_path)) for _ in range(4)]
    try:
        ids = {stores[0].create([f"x{i}"], None, True).id for i in range(20)}
        claimed: list[str] = []
        lock = threading.Lock()

        def worker(store):
            while (job := store.claim()) is not None:
                with lock:
                    claimed.append(job.id)

        threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(claimed) == sorted(ids)  # each job exactly once
    finally:
        for s in stores:
            s.close()


def test_one_claim_takes_one_job_whatever_the_plan(pg_url, tmp_path):
    """Regression: the claim's pick was a subquery of UPDATE ... FROM; with table
    statistics that make the planner rescan it inside a nested loop (one job analysed,
    then a second queued), one claim marked both jobs running and returned one."""
    store = PostgresJobStore(pg_url, lease_s=60, results=str(tmp_path))
    try:
        first = store.create(["a"], None, True)
        with store.pool.connection() as conn:
            conn.execute("ANALYZE rinfer_jobs")
        second = store.create(["b"], None, True)
        assert store.claim().id == first.id
        with store.pool.connection() as conn:
            running = conn.execute("SELECT id FROM rinfer_jobs WHERE status = 'running'").fetchall()
        assert running == [(first.id,)]
        assert store.claim().id == second.id and store.claim() is None
    finally:
        store.close()


def test_large_results_go_to_the_object_store(pg_url, tmp_path):
    store = PostgresJobStore(pg_url, lease_s=30, result_limit_bytes=1000, results=f"file://{tmp_path}")
    try:
        vecs = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)  # 1600 bytes > 1000
        small = np.ones((2, 8), np.float32)  # 64 bytes: stays in the database
        big_job = store.create([f"b{i}" for i in range(50)], None, True)
        small_job = store.create(["s0", "s1"], None, True)
        for job, v in ((big_job, vecs), (small_job, small)):
            assert store.claim().id == job.id
            half = len(v) // 2
            store.save_rows(job.id, 0, v[:half])
            store.save_rows(job.id, half, v[half:])
            store.set_status(job.id, SUCCEEDED)
        files = list((tmp_path / "jobs").iterdir())
        assert len(files) == 1 and files[0].name.startswith(big_job.id) and files[0].stat().st_size == 1600
        np.testing.assert_array_equal(rows_of(store, big_job.id, 50), vecs)
        assert (
            np.frombuffer(b"".join(store.rows(big_job.id, 10, 5)), "<f4").reshape(5, 8).tolist() == vecs[10:15].tolist()
        )
        np.testing.assert_array_equal(rows_of(store, small_job.id, 2), small)
        with store.pool.connection() as conn:
            left = conn.execute("SELECT job_id, count(*) FROM rinfer_job_rows GROUP BY job_id").fetchall()
        assert left == [(small_job.id, 2)]
        assert isinstance(store.results, LocalObjectStore)
        with pytest.raises(ValueError):
            store.results.read("../escape", 0, 1)
    finally:
        store.close()


def test_http_api_on_postgres(pg_url, embedder, model_dir, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient
    from rinfer.server import Settings, create_app
    from test_jobs import wait_done

    monkeypatch.setenv("RINFER_JOB_RESULT_LIMIT_BYTES", str(100 * 384 * 4))  # more than 100 rows: to files
    monkeypatch.setenv("RINFER_JOB_RESULTS_URL", f"file://{tmp_path}/results")
    monkeypatch.setenv("RINFER_JOB_POLL_S", "0.2")
    texts = [f"background text {i} about {i % 13}" for i in range(700)]
    want = embedder.encode(texts)
    settings = Settings(model_path=str(model_dir), job_store_url=pg_url, max_job_inputs=5000)
    with TestClient(create_app(settings)) as c:
        jid = c.post("/v1/jobs", json={"inputs": texts}).json()["id"]
        small = c.post("/v1/jobs", json={"inputs": texts[:3]}).json()["id"]
        for j, n in ((jid, 700), (small, 3)):
            st = wait_done(c, j)
            assert st["status"] == "succeeded" and st["done"] == n
        got = np.array([json.loads(x) for x in c.get(f"/v1/jobs/{jid}/result").text.splitlines()], np.float32)
        np.testing.assert_allclose(got, want, atol=1e-6)
        arr = np.load(io.BytesIO(c.get(f"/v1/jobs/{jid}/result?format=npy").content))
        np.testing.assert_array_equal(arr, got)
        lines = c.get(f"/v1/jobs/{small}/result").text.splitlines()
        np.testing.assert_allclose(np.array([json.loads(x) for x in lines]), want[:3], atol=1e-6)
        assert len(list((tmp_path / "results" / "jobs").iterdir())) == 1  # the big one only
        # failed and cancelled jobs behave as on SQLite
        bad = c.post("/v1/jobs", json={"inputs": ["ok", "word " * 400], "truncate": False}).json()["id"]
        st = wait_done(c, bad)
        assert st["status"] == "failed" and "limit of 256" in st["error"]
        big = c.post("/v1/jobs", json={"inputs": texts * 7}).json()["id"]
        assert c.delete(f"/v1/jobs/{big}").json()["status"] == "cancelled"
        time.sleep(0.5)
        st = c.get(f"/v1/jobs/{big}").json()
        assert st["status"] == "cancelled" and st["done"] < 4900
        assert c.get(f"/v1/jobs/{big}/result").status_code == 409


def _start_server(port: int, pg_url: str, tmp_path, name: str) -> subprocess.Popen:
    env = dict(
        os.environ,
        RINFER_JOB_LEASE_S="2",
        RINFER_JOB_POLL_S="0.2",
        RINFER_JOB_RESULTS_URL=f"file://{tmp_path}/results",
        PYTHONPATH=os.path.join(ROOT, "python") + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    with open(tmp_path / f"{name}.log", "wb") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "rinfer.server", "--port", str(port), "--threads", "1", "--job-store-url", pg_url],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _wait_ready(base: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    import httpx

    end = time.time() + timeout
    while time.time() < end:
        assert proc.poll() is None, "the server exited while starting"
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{base} not ready")


def test_two_replicas_share_the_queue_and_take_over_a_killed_ones_job(pg_url, embedder, tmp_path):
    import httpx

    ports = [_free_port(), _free_port()]
    procs = [_start_server(p, pg_url, tmp_path, f"replica{i}") for i, p in enumerate(ports)]
    bases = [f"http://127.0.0.1:{p}" for p in ports]
    try:
        for base, proc in zip(bases, procs):
            _wait_ready(base, proc)
        texts = [[f"replica job {j} text {i}: {'some words ' * (i % 7)}" for i in range(1200)] for j in range(2)]
        # each job accepted by a different replica; whichever is free runs it
        ids = [httpx.post(f"{bases[j]}/v1/jobs", json={"inputs": texts[j]}, timeout=30).json()["id"] for j in range(2)]
        conn = psycopg.connect(pg_url, autocommit=True)
        owners: dict[str, str] = {}
        victim = None
        end = time.time() + 60
        while victim is None and time.time() < end:
            for jid, owner, done, total in conn.execute(
                "SELECT id, lease_owner, done, total FROM rinfer_jobs WHERE status = 'running'"
            ):
                owners[jid] = owner
                if 0 < done < total - 300:
                    victim = (jid, owner, done)
                    break
            time.sleep(0.05)
        assert victim is not None, f"no job got under way: {owners}"
        jid, owner, done = victim
        pid = int(owner.split(":")[1])
        killed = [p.pid for p in procs].index(pid)
        procs[killed].send_signal(signal.SIGKILL)  # mid-job: no chance to release anything
        procs[killed].wait(10)
        survivor = bases[1 - killed]
        seen = httpx.get(f"{survivor}/v1/jobs/{jid}", timeout=10).json()
        assert seen["status"] == "running" and seen["done"] >= done  # progress visible from the other replica
        t0 = time.time()
        for j in ids:
            end = time.time() + 120
            while (st := httpx.get(f"{survivor}/v1/jobs/{j}", timeout=10).json())["status"] in ("queued", "running"):
                assert time.time() < end, st
                time.sleep(0.1)
            assert st["status"] == "succeeded" and st["done"] == 1200, st
        took_over_in = time.time() - t0
        for j, want_texts in zip(ids, texts):
            got = np.load(io.BytesIO(httpx.get(f"{survivor}/v1/jobs/{j}/result?format=npy", timeout=60).content))
            assert got.shape == (1200, 384)
            np.testing.assert_allclose(got, embedder.encode(want_texts), atol=1e-5)  # none lost, none shifted
        n, distinct, claims, owner_now = conn.execute(
            "SELECT count(*), count(DISTINCT idx), (SELECT claims FROM rinfer_jobs WHERE id = %s), "
            "(SELECT lease_owner FROM rinfer_jobs WHERE id = %s) FROM rinfer_job_rows WHERE job_id = %s",
            (jid, jid, jid),
        ).fetchone()
        assert (n, distinct, owner_now) == (1200, 1200, None) and claims >= 2  # each text stored once
        conn.close()
        print(f"\nkilled replica {killed} at {done}/1200; both jobs done {took_over_in:.1f}s later on the other")
    finally:
        t = time.time()
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        print(f"servers stopped in {time.time() - t:.1f}s")


def test_old_tables_are_migrated_and_jobs_are_scoped_by_key(pg_url, tmp_path):
    """A database made before jobs had owners: the column is added, the old row is read
    (owner NULL, seen by every caller) and claimed; new jobs carry the key's SHA-256."""
    import hashlib

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            """CREATE TABLE rinfer_jobs (
                id text PRIMARY KEY, status text NOT NULL, total integer NOT NULL, done integer NOT NULL,
                normalize boolean, truncate boolean NOT NULL, error text,
                created double precision NOT NULL, updated double precision NOT NULL,
                lease_owner text, lease_until double precision, claims integer NOT NULL DEFAULT 0,
                result_key text, row_bytes integer)"""
        )
        conn.execute("INSERT INTO rinfer_jobs VALUES ('old', 'queued', 1, 0, NULL, true, NULL, 1, 1)")
    store = PostgresJobStore(pg_url, lease_s=30, results=str(tmp_path))
    try:
        old = store.get("old")
        assert (old.id, old.status, old.owner) == ("old", "queued", None)
        alice, bob = hashlib.sha256(b"alice").hexdigest(), hashlib.sha256(b"bob").hexdigest()
        mine = store.create(["a"], None, True, alice)
        theirs = store.create(["b"], None, True, bob)
        assert store.get(mine.id).owner == alice and mine.owner == alice
        assert [j.id for j in store.list_jobs(alice, 10)] == [mine.id, "old"]
        assert [j.id for j in store.list_jobs(bob, 10)] == [theirs.id, "old"]
        assert [j.id for j in store.list_jobs(None, 10)] == ["old"]
        assert store.get(mine.id).visible_to(alice) and not store.get(mine.id).visible_to(bob)
        claimed = store.claim()
        assert (claimed.id, claimed.owner) == ("old", None)
        assert store.claim().owner == alice
        PostgresJobStore(pg_url, lease_s=30, results=str(tmp_path)).close()  # the schema again: no change, no error
    finally:
        store.close()


def test_http_jobs_on_postgres_are_visible_only_with_their_key(pg_url, model_dir, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient
    from rinfer.server import Settings, create_app

    monkeypatch.setenv("RINFER_JOB_RESULTS_URL", f"file://{tmp_path}/results")
    monkeypatch.setenv("RINFER_JOB_POLL_S", "0.2")
    settings = Settings(model_path=str(model_dir), job_store_url=pg_url, api_key=["alice", "bob"])
    alice, bob = {"Authorization": "Bearer alice"}, {"Authorization": "Bearer bob"}
    with TestClient(create_app(settings)) as c:
        jid = c.post("/v1/jobs", json={"inputs": ["one", "two"]}, headers=alice).json()["id"]
        end = time.time() + 60
        while c.get(f"/v1/jobs/{jid}", headers=alice).json()["status"] in ("queued", "running"):
            assert time.time() < end
            time.sleep(0.05)
        assert c.get(f"/v1/jobs/{jid}/result", headers=alice).status_code == 200
        for method, path in (("GET", ""), ("GET", "/result"), ("DELETE", "")):
            assert c.request(method, f"/v1/jobs/{jid}{path}", headers=bob).status_code == 404
        assert [j["id"] for j in c.get("/v1/jobs", headers=alice).json()["data"]] == [jid]
        assert c.get("/v1/jobs", headers=bob).json()["data"] == []
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT * FROM rinfer_jobs").fetchall()
    assert "alice" not in repr(rows)
