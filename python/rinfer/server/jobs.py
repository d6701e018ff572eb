"""Background embedding jobs, stored in a database so that a restart loses no
accepted job: unfinished jobs resume where they stopped. The store sits behind the
small `JobStore` interface; `SQLiteJobStore` is the default (one file, one server);
`PostgresJobStore` (``postgresql://...``, in jobstore_pg.py) lets several replicas share
one queue: each claims a job under a lease that it renews, and a replica that dies has
its job taken over by another once the lease expires.

Jobs are scoped by API key: a job stores the SHA-256 of the key that created it
(`owner`, never the key) and only a caller with that key sees it; a job without an
owner (created while the server had no keys, or before owners were stored) is seen by
every caller the server lets in. Job ids are random UUIDs (122 bits from os.urandom)."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hmac
import logging
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass

import numpy as np

log = logging.getLogger("rinfer.server.jobs")

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"


@dataclass
class Job:
    id: str
    status: str
    total: int
    done: int
    normalize: bool | None
    truncate: bool
    error: str | None
    created: float
    updated: float
    owner: str | None = None  # SHA-256 of the API key that created the job; None: no key

    def visible_to(self, owner: str | None) -> bool:
        """Whether a caller holding the key of id `owner` (None: no key) may see this job."""
        return self.owner is None or (owner is not None and hmac.compare_digest(self.owner, owner))

    def public(self) -> dict:
        return {
            "id": self.id,
            "object": "embedding_job",
            "status": self.status,
            "total": self.total,
            "done": self.done,
            "progress": self.done / self.total if self.total else 1.0,
            "error": self.error,
            "created": self.created,
            "updated": self.updated,
        }


class LeaseLost(Exception):
    """This replica no longer holds the job (its lease expired and another replica took
    it over, or it was cancelled): the chunk it was saving is dropped, not stored."""


class JobStore(abc.ABC):
    """Where jobs, their inputs and their results live."""

    #: seconds between two looks for work when nothing woke the runner (None: only
    #: `notify` wakes it, as with one server and one SQLite file)
    poll_interval: float | None = None
    #: seconds a claimed job stays this replica's without a heartbeat (None: no leases)
    lease_s: float | None = None

    @abc.abstractmethod
    def create(self, texts: list[str], normalize: bool | None, truncate: bool, owner: str | None = None) -> Job: ...

    @abc.abstractmethod
    def get(self, job_id: str) -> Job | None: ...

    @abc.abstractmethod
    def list_jobs(self, owner: str | None, limit: int) -> list[Job]:
        """The newest `limit` jobs that the holder of key id `owner` may see (Job.visible_to)."""

    @abc.abstractmethod
    def next_runnable(self) -> Job | None:
        """The oldest job that is queued or was running when the server stopped."""

    @abc.abstractmethod
    def texts(self, job_id: str, start: int, count: int) -> list[str]: ...

    @abc.abstractmethod
    def save_rows(self, job_id: str, start: int, rows: np.ndarray) -> None:
        """Stores rows `start..start+len(rows)` and advances `done` (one transaction)."""

    @abc.abstractmethod
    def rows(self, job_id: str, start: int, count: int) -> list[bytes]: ...

    @abc.abstractmethod
    def set_status(self, job_id: str, status: str, error: str | None = None) -> None: ...

    def claim(self) -> Job | None:
        """Takes the next job to run (marking it running), or None when there is none."""
        job = self.next_runnable()
        if job is not None:
            self.set_status(job.id, RUNNING)
        return job

    def heartbeat(self, job_id: str) -> bool:
        """Extends this replica's lease on a job; False when the job is no longer ours."""
        return True

    def close(self) -> None:
        """Releases connections."""


_COLUMNS = "id, status, total, done, normalize, truncate, error, created, updated, owner"


class SQLiteJobStore(JobStore):
    """Jobs in one SQLite file (WAL mode); safe to call from several threads."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(
                """
                CREATE TABLE IF NOT EXISTS jobs (
                    id TEXT PRIMARY KEY, status TEXT NOT NULL, total INTEGER NOT NULL,
                    done INTEGER NOT NULL, normalize INTEGER, truncate INTEGER NOT NULL,
                    error TEXT, created REAL NOT NULL, updated REAL NOT NULL, owner TEXT);
                CREATE TABLE IF NOT EXISTS job_inputs (
                    job_id TEXT NOT NULL, idx INTEGER NOT NULL, text TEXT NOT NULL,
                    PRIMARY KEY (job_id, idx));
                CREATE TABLE IF NOT EXISTS job_rows (
                    job_id TEXT NOT NULL, idx INTEGER NOT NULL, vector BLOB NOT NULL,
                    PRIMARY KEY (job_id, idx));
                CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, created);
                """
            )
            # a file from before jobs had owners: add the column; its rows keep owner NULL
            columns = [row[1] for row in self._db.execute("PRAGMA table_info(jobs)")]
            if "owner" not in columns:
                self._db.execute("ALTER TABLE jobs ADD COLUMN owner TEXT")
            self._db.execute("CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, created)")

    @contextlib.contextmanager
    def _transaction(self):
        """BEGIN ... COMMIT under the lock; ROLLBACK when anything fails in between. Without
        it a failed insert (found by schemathesis: a text SQLite could not encode) left the
        connection inside its transaction, and every later job was refused with a 500."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @staticmethod
    def _job(row) -> Job:
        jid, status, total, done, norm, trunc, err, created, updated, owner = row
        norm = None if norm is None else bool(norm)
        return Job(jid, status, total, done, norm, bool(trunc), err, created, updated, owner)

    def _one(self, sql: str, args=()) -> Job | None:
        with self._lock:
            row = self._db.execute(sql, args).fetchone()
        return self._job(row) if row else None

    def create(self, texts, normalize, truncate, owner=None) -> Job:
        now = time.time()
        jid = uuid.uuid4().hex
        norm = None if normalize is None else int(normalize)
        with self._transaction():
            self._db.execute(
                f"INSERT INTO jobs ({_COLUMNS}) VALUES (?, ?, ?, 0, ?, ?, NULL, ?, ?, ?)",
                (jid, QUEUED, len(texts), norm, int(truncate), now, now, owner),
            )
            self._db.executemany("INSERT INTO job_inputs VALUES (?, ?, ?)", ((jid, i, t) for i, t in enumerate(texts)))
        return Job(jid, QUEUED, len(texts), 0, normalize, truncate, None, now, now, owner)

    def get(self, job_id):
        return self._one(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))

    def list_jobs(self, owner, limit):
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE owner IS NULL OR owner = ? ORDER BY created DESC LIMIT ?",
                (owner, limit),
            ).fetchall()
        return [self._job(r) for r in rows]

    def next_runnable(self):
        return self._one(
            f"SELECT {_COLUMNS} FROM jobs WHERE status IN (?, ?) ORDER BY created LIMIT 1",
            (QUEUED, RUNNING),
        )

    def texts(self, job_id, start, count):
        with self._lock:
            rows = self._db.execute(
                "SELECT text FROM job_inputs WHERE job_id = ? AND idx >= ? ORDER BY idx LIMIT ?",
                (job_id, start, count),
            ).fetchall()
        return [r[0] for r in rows]

    def save_rows(self, job_id, start, rows):
        data = [(job_id, start + i, np.ascontiguousarray(r, dtype="<f4").tobytes()) for i, r in enumerate(rows)]
        with self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO job_rows VALUES (?, ?, ?)", data)
            self._db.execute(
                "UPDATE jobs SET done = ?, updated = ? WHERE id = ?", (start + len(rows), time.time(), job_id)
            )

    def rows(self, job_id, start, count):
        with self._lock:
            got = self._db.execute(
                "SELECT vector FROM job_rows WHERE job_id = ? AND idx >= ? ORDER BY idx LIMIT ?",
                (job_id, start, count),
            ).fetchall()
        return [r[0] for r in got]

    def set_status(self, job_id, status, error=None):
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET status = ?, error = ?, updated = ? WHERE id = ?",
                (status, error, time.time(), job_id),
            )
            if status in (CANCELLED, FAILED):
                self._db.execute("DELETE FROM job_inputs WHERE job_id = ?", (job_id,))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def open_store(url: str) -> JobStore:
    """`sqlite:///path/to/file.db` (or a bare path), or `postgresql://user@host/db`
    (also `postgres://`; needs psycopg, see requirements-pg.txt)."""
    if url.startswith("sqlite:///"):
        return SQLiteJobStore(url[len("sqlite:///") :])
    if url.startswith(("postgresql://", "postgres://")):
        from .jobstore_pg import PostgresJobStore

        return PostgresJobStore(url)
    if "://" in url:
        raise ValueError(f"job store URL {url!r}: only sqlite:/// and postgresql:// are supported")
    return SQLiteJobStore(url)


class JobRunner:
    """Runs stored jobs one after another, in chunks, in a background task."""

    def __init__(self, store: JobStore, embedder, chunk: int = 256, admission=None) -> None:
        self.store, self.embedder, self.chunk = store, embedder, chunk
        self.admission = admission  # the server's engine queue: chunks take their turn with requests
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="rinfer-jobs")

    def notify(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _loop(self) -> None:
        while True:
            self._wake.clear()  # before looking: a notify from now on is not lost
            job = await asyncio.to_thread(self.store.claim)
            if job is None:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.store.poll_interval)
                except TimeoutError:
                    pass  # look again: another replica may have queued a job, or a lease expired
                continue
            await self._run(job)

    async def _encode(self, texts: list[str], job: Job):
        kw = {"normalize": job.normalize, "truncate": job.truncate}
        if self.admission is None:
            return await asyncio.to_thread(self.embedder.encode, texts, **kw)
        return await self.admission.submit(self.embedder.encode, texts, background=True, **kw)

    async def _heartbeat(self, job_id: str, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            if not await asyncio.to_thread(self.store.heartbeat, job_id):
                return  # lost: the next save is refused, and the runner moves on

    async def _run(self, job: Job) -> None:
        store = self.store
        if job.done:
            log.info("resuming job %s at %d/%d", job.id, job.done, job.total)
        beat = None
        if store.lease_s:
            beat = asyncio.create_task(self._heartbeat(job.id, store.lease_s / 3), name=f"rinfer-lease-{job.id}")
        done = job.done
        try:
            while done < job.total:
                current = await asyncio.to_thread(store.get, job.id)
                if current is None or current.status == CANCELLED:
                    log.info("job %s cancelled at %d/%d", job.id, done, job.total)
                    return
                texts = await asyncio.to_thread(store.texts, job.id, done, self.chunk)
                rows = await self._encode(texts, job)
                await asyncio.to_thread(store.save_rows, job.id, done, rows)
                done += len(texts)
            await asyncio.to_thread(store.set_status, job.id, SUCCEEDED)
            log.info("job %s succeeded (%d texts)", job.id, job.total)
        except asyncio.CancelledError:
            raise  # shutdown: the job stays `running` and resumes at the next start (or lease expiry)
        except LeaseLost as exc:
            log.warning("job %s: %s; left to the replica that holds it", job.id, exc)
        except Exception as exc:  # noqa: BLE001 - a bad input fails its job, never the runner
            log.warning("job %s failed: %s", job.id, exc)
            try:
                await asyncio.to_thread(store.set_status, job.id, FAILED, str(exc))
            except LeaseLost:
                pass
        finally:
            if beat is not None:
                beat.cancel()
