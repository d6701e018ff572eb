"""`rinfer serve` as a real process on a free loopback port, for the tests that drive
it with official clients or schemathesis (not a test module: no `test_` prefix)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(model, *extra: str) -> Iterator[str]:
    """`rinfer serve --model MODEL EXTRA...` until /ready answers 200; yields its base
    URL and stops the process after."""
    port = free_port()
    cmd = [sys.executable, "-m", "rinfer", "serve", "--model", str(model), "--port", str(port), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if proc.poll() is not None:
                raise RuntimeError(f"rinfer serve exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("rinfer serve did not become ready")
        yield base
    finally:
        proc.terminate()
        proc.wait(10)
