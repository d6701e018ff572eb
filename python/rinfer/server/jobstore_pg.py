"""Background jobs in PostgreSQL, shared by several replicas (``RINFER_JOB_STORE_URL=
postgresql://user@host/db``; psycopg 3 and psycopg_pool, pinned in requirements-pg.txt).

How replicas share the queue:

* a replica claims the oldest runnable job with ``SELECT ... FOR UPDATE SKIP LOCKED``
  (two replicas never claim the same job, and neither waits on the other's lock) and
  holds it under a lease (``lease_owner``, ``lease_until``, in the database's clock);
* while it runs the job it renews the lease (a heartbeat every third of the lease, and
  every saved chunk); a job whose lease has expired (its replica was killed, or hung) is
  runnable again and the next free replica takes it over from its last saved chunk;
* every chunk is saved fenced: rows ``start..start+n`` are stored, and ``done`` moves
  from ``start`` to ``start+n``, in one transaction that only commits while this replica
  still holds the lease and ``done`` is still ``start``. A replica that lost its lease
  gets `LeaseLost` and its chunk is dropped, so no text is embedded twice into a result
  and none is skipped;
* a finished result larger than ``result_limit_bytes`` is moved out of the database to
  an `ObjectStore` (default: a local or shared folder; a ``file://`` URL), one object per
  job, read back by range.

Settings (environment, beside ``RINFER_JOB_STORE_URL``): ``RINFER_JOB_LEASE_S`` (30),
``RINFER_JOB_POLL_S`` (1), ``RINFER_JOB_RESULT_LIMIT_BYTES`` (16 MiB),
``RINFER_JOB_RESULTS_URL`` (``file://rinfer-job-results``; replicas on several machines
need a folder they all mount, or another `ObjectStore`)."""

from __future__ import annotations

import abc
import logging
import os
import pathlib
import socket
import uuid
from collections.abc import Iterable

import numpy as np

from .jobs import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, Job, JobStore, LeaseLost

log = logging.getLogger("rinfer.server.jobs")

try:
    import psycopg
    from psycopg_pool import ConnectionPool
except ImportError as exc:  # pragma: no cover - exercised where psycopg is missing
    psycopg = None
    _IMPORT_ERROR: ImportError | None = exc
else:
    _IMPORT_ERROR = None

NOW = "extract(epoch from clock_timestamp())"  # one clock for all replicas: the database's

SCHEMA = """
CREATE TABLE IF NOT EXISTS rinfer_jobs (
    id text PRIMARY KEY, status text NOT NULL, total integer NOT NULL, done integer NOT NULL,
    normalize boolean, truncate boolean NOT NULL, error text,
    created double precision NOT NULL, updated double precision NOT NULL,
    lease_owner text, lease_until double precision, claims integer NOT NULL DEFAULT 0,
    result_key text, row_bytes integer, owner text);
-- tables from before jobs had owners (the SHA-256 of the creating API key): old rows keep NULL
ALTER TABLE rinfer_jobs ADD COLUMN IF NOT EXISTS owner text;
CREATE INDEX IF NOT EXISTS rinfer_jobs_by_owner ON rinfer_jobs (owner, created);
CREATE TABLE IF NOT EXISTS rinfer_job_inputs (
    job_id text NOT NULL, idx integer NOT NULL, text text NOT NULL, PRIMARY KEY (job_id, idx));
CREATE TABLE IF NOT EXISTS rinfer_job_rows (
    job_id text NOT NULL, idx integer NOT NULL, vector bytea NOT NULL, PRIMARY KEY (job_id, idx));
CREATE INDEX IF NOT EXISTS rinfer_jobs_runnable ON rinfer_jobs (created)
    WHERE status IN ('queued', 'running');
"""

COLUMNS = "id, status, total, done, normalize, truncate, error, created, updated, owner"


class ObjectStore(abc.ABC):
    """Where large results go: whole objects written once, read back by byte range."""

    @abc.abstractmethod
    def put(self, key: str, chunks: Iterable[bytes]) -> None:
        """Writes the object atomically (readers see all of it or none)."""

    @abc.abstractmethod
    def read(self, key: str, offset: int, length: int) -> bytes: ...

    @abc.abstractmethod
    def delete(self, key: str) -> None: ...


class LocalObjectStore(ObjectStore):
    """Objects as files under one folder (a shared mount when replicas are on several machines)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = pathlib.Path(root)

    def _path(self, key: str) -> pathlib.Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"object key {key!r} leaves the store")
        return self.root / key

    def put(self, key, chunks):
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        try:
            with open(tmp, "wb") as f:
                f.writelines(chunks)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def read(self, key, offset, length):
        with open(self._path(key), "rb") as f:
            f.seek(offset)
            return f.read(length)

    def delete(self, key):
        self._path(key).unlink(missing_ok=True)


def open_object_store(url: str) -> ObjectStore:
    """``file:///abs/folder``, ``file://rel/folder`` or a bare folder."""
    if url.startswith("file://"):
        return LocalObjectStore(url[len("file://") :])
    if "://" in url:
        raise ValueError(f"result store URL {url!r}: only file:// (a local or mounted folder) is supported")
    return LocalObjectStore(url)


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


class PostgresJobStore(JobStore):
    """Jobs in PostgreSQL; one instance per replica (its `owner` id names it in leases)."""

    def __init__(
        self,
        url: str,
        *,
        lease_s: float | None = None,
        poll_interval: float | None = None,
        result_limit_bytes: int | None = None,
        results: ObjectStore | str | None = None,
        pool_size: int = 4,
    ) -> None:
        if psycopg is None:
            raise RuntimeError(
                f"the PostgreSQL job store needs psycopg and psycopg_pool (pip install -r requirements-pg.txt): "
                f"{_IMPORT_ERROR}"
            )
        self.lease_s = lease_s if lease_s is not None else _env_float("RINFER_JOB_LEASE_S", 30.0)
        self.poll_interval = poll_interval if poll_interval is not None else _env_float("RINFER_JOB_POLL_S", 1.0)
        self.result_limit_bytes = int(
            result_limit_bytes
            if result_limit_bytes is not None
            else _env_float("RINFER_JOB_RESULT_LIMIT_BYTES", 16 * 1024 * 1024)
        )
        if results is None:
            results = os.environ.get("RINFER_JOB_RESULTS_URL") or "file://rinfer-job-results"
        self.results = open_object_store(results) if isinstance(results, str) else results
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://") :]
        self.pool = ConnectionPool(url, min_size=1, max_size=pool_size, open=False, name="rinfer-jobs")
        self.pool.open(wait=True, timeout=30)
        with self.pool.connection() as conn:
            # one replica at a time creates the tables (CREATE ... IF NOT EXISTS races otherwise)
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('rinfer_jobs_schema'))")
            conn.execute(SCHEMA)

    @staticmethod
    def _job(row) -> Job:
        return Job(*row)

    def _one(self, sql: str, args=()) -> Job | None:
        with self.pool.connection() as conn:
            row = conn.execute(sql, args).fetchone()
        return self._job(row) if row else None

    def create(self, texts, normalize, truncate, owner=None) -> Job:
        jid = uuid.uuid4().hex
        with self.pool.connection() as conn, conn.transaction():
            row = conn.execute(
                f"INSERT INTO rinfer_jobs ({COLUMNS}) VALUES (%s, %s, %s, 0, %s, %s, NULL, {NOW}, {NOW}, %s) "
                f"RETURNING {COLUMNS}",
                (jid, QUEUED, len(texts), normalize, truncate, owner),
            ).fetchone()
            with conn.cursor() as cur, cur.copy("COPY rinfer_job_inputs (job_id, idx, text) FROM STDIN") as copy:
                for i, t in enumerate(texts):
                    copy.write_row((jid, i, t))
        return self._job(row)

    def get(self, job_id):
        return self._one(f"SELECT {COLUMNS} FROM rinfer_jobs WHERE id = %s", (job_id,))

    def list_jobs(self, owner, limit):
        with self.pool.connection() as conn:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM rinfer_jobs WHERE owner IS NULL OR owner = %s ORDER BY created DESC LIMIT %s",
                (owner, limit),
            ).fetchall()
        return [self._job(r) for r in rows]

    def next_runnable(self):
        """A look only (claim takes it): the oldest queued job, or running one whose lease expired."""
        return self._one(
            f"SELECT {COLUMNS} FROM rinfer_jobs WHERE status = 'queued' "
            f"OR (status = 'running' AND lease_until < {NOW}) ORDER BY created LIMIT 1"
        )

    def claim(self):
        """Claims the oldest runnable job for this replica, skipping those another holds locked.

        The pick is a MATERIALIZED CTE: run once. As a subquery in ``UPDATE ... FROM`` the
        planner may put it on the inner side of a nested loop and rescan it for every row
        of the table, and each rescan, skipping the row this statement just locked and
        updated, picks the next job: one claim marked several jobs running and returned one
        (the others waited a whole lease for a takeover)."""
        with self.pool.connection() as conn:
            row = conn.execute(
                f"""WITH c AS MATERIALIZED (
                        SELECT id FROM rinfer_jobs
                        WHERE status = 'queued' OR (status = 'running' AND lease_until < {NOW})
                        ORDER BY created LIMIT 1 FOR UPDATE SKIP LOCKED)
                    UPDATE rinfer_jobs j SET status = 'running', lease_owner = %(me)s,
                        lease_until = {NOW} + %(lease)s, updated = {NOW}, claims = j.claims + 1
                    FROM c
                    WHERE j.id = c.id
                    RETURNING j.id, j.status, j.total, j.done, j.normalize, j.truncate, j.error,
                              j.created, j.updated, j.owner, j.claims""",
                {"me": self.owner, "lease": self.lease_s},
            ).fetchone()
        if row is None:
            return None
        job = self._job(row[:-1])
        if row[-1] > 1:
            log.info("job %s taken over at %d/%d (claim %d)", job.id, job.done, job.total, row[-1])
        return job

    def heartbeat(self, job_id):
        with self.pool.connection() as conn:
            cur = conn.execute(
                f"UPDATE rinfer_jobs SET lease_until = {NOW} + %s "
                "WHERE id = %s AND lease_owner = %s AND status = 'running'",
                (self.lease_s, job_id, self.owner),
            )
            return cur.rowcount == 1

    def texts(self, job_id, start, count):
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT text FROM rinfer_job_inputs WHERE job_id = %s AND idx >= %s ORDER BY idx LIMIT %s",
                (job_id, start, count),
            ).fetchall()
        return [r[0] for r in rows]

    def save_rows(self, job_id, start, rows):
        rows = np.ascontiguousarray(rows, dtype="<f4")
        with self.pool.connection() as conn, conn.transaction():
            cur = conn.execute(
                f"""UPDATE rinfer_jobs SET done = %s, updated = {NOW}, lease_until = {NOW} + %s,
                        row_bytes = %s
                    WHERE id = %s AND lease_owner = %s AND status = 'running' AND done = %s""",
                (
                    start + len(rows),
                    self.lease_s,
                    rows.shape[1] * 4 if rows.ndim == 2 else None,
                    job_id,
                    self.owner,
                    start,
                ),
            )
            if cur.rowcount != 1:
                raise LeaseLost(f"rows {start}..{start + len(rows)} not saved: the lease is no longer ours")
            with conn.cursor() as c2, c2.copy("COPY rinfer_job_rows (job_id, idx, vector) FROM STDIN") as copy:
                for i, r in enumerate(rows):
                    copy.write_row((job_id, start + i, r.tobytes()))

    def _result_key(self, job_id):
        with self.pool.connection() as conn:
            return conn.execute(
                "SELECT result_key, row_bytes FROM rinfer_jobs WHERE id = %s", (job_id,)
            ).fetchone() or (None, None)

    def rows(self, job_id, start, count):
        key, row_bytes = self._result_key(job_id)
        if key is not None:
            blob = self.results.read(key, start * row_bytes, count * row_bytes)
            return [blob[i : i + row_bytes] for i in range(0, len(blob), row_bytes)]
        with self.pool.connection() as conn:
            got = conn.execute(
                "SELECT vector FROM rinfer_job_rows WHERE job_id = %s AND idx >= %s ORDER BY idx LIMIT %s",
                (job_id, start, count),
            ).fetchall()
        return [bytes(r[0]) for r in got]

    def _stream_rows(self, job_id) -> Iterable[bytes]:
        # a server-side cursor: the rows come in pages, never all at once
        with self.pool.connection() as conn, conn.transaction(), conn.cursor(name=f"rows_{job_id}") as cur:
            cur.itersize = 1024
            cur.execute("SELECT vector FROM rinfer_job_rows WHERE job_id = %s ORDER BY idx", (job_id,))
            for (vector,) in cur:
                yield bytes(vector)

    def _finish(self, job_id: str) -> None:
        with self.pool.connection() as conn:
            total, row_bytes = conn.execute(
                "SELECT total, row_bytes FROM rinfer_jobs WHERE id = %s", (job_id,)
            ).fetchone()
        key = None
        if row_bytes and total * row_bytes > self.result_limit_bytes:
            key = f"jobs/{job_id}-{uuid.uuid4().hex[:8]}.f32"  # this attempt's own name: no clash on a takeover
            self.results.put(key, self._stream_rows(job_id))
        try:
            with self.pool.connection() as conn, conn.transaction():
                cur = conn.execute(
                    f"""UPDATE rinfer_jobs SET status = 'succeeded', error = NULL, updated = {NOW},
                            lease_owner = NULL, lease_until = NULL, result_key = %s
                        WHERE id = %s AND lease_owner = %s AND status = 'running' AND done = total""",
                    (key, job_id, self.owner),
                )
                if cur.rowcount != 1:
                    raise LeaseLost("the job's end was not recorded: the lease is no longer ours")
                if key is not None:
                    conn.execute("DELETE FROM rinfer_job_rows WHERE job_id = %s", (job_id,))
        except BaseException:
            if key is not None:
                self.results.delete(key)
            raise
        if key is not None:
            log.info("job %s: result (%d bytes) moved to the result store as %s", job_id, total * row_bytes, key)

    def set_status(self, job_id, status, error=None):
        if status == SUCCEEDED:
            return self._finish(job_id)
        with self.pool.connection() as conn, conn.transaction():
            if status == FAILED:  # only the replica running it fails a job
                sql = "WHERE id = %s AND lease_owner = %s AND status = 'running'"
                args: tuple = (job_id, self.owner)
            elif status in (CANCELLED, RUNNING):
                sql, args = "WHERE id = %s AND status IN ('queued', 'running')", (job_id,)
            else:
                sql, args = "WHERE id = %s", (job_id,)
            lease = f"lease_owner = %s, lease_until = {NOW} + %s" if status == RUNNING else "lease_owner = NULL"
            lease_args = (self.owner, self.lease_s) if status == RUNNING else ()
            cur = conn.execute(
                f"UPDATE rinfer_jobs SET status = %s, error = %s, updated = {NOW}, {lease} {sql}",
                (status, error, *lease_args, *args),
            )
            if status == FAILED and cur.rowcount != 1:
                raise LeaseLost("the job's failure was not recorded: the lease is no longer ours")
            if status in (CANCELLED, FAILED) and cur.rowcount == 1:
                conn.execute("DELETE FROM rinfer_job_inputs WHERE job_id = %s", (job_id,))

    def close(self) -> None:
        self.pool.close()
