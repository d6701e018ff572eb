"""API keys: several may be allowed (``--api-key`` repeated, ``RINFER_API_KEY=a,b``,
``--api-key-file``), and a request's key is checked against every one of them in
constant time. Past the check the server knows a key only by its SHA-256 (the id
background jobs are scoped by): no key is stored or logged."""

from __future__ import annotations

import hashlib
import hmac
import pathlib
from collections.abc import Iterable


def read_key_file(path: str) -> list[str]:
    """The keys of a file, one per line; blank lines and lines starting with ``#`` are
    ignored, spaces around a key are not part of it. A file that cannot be read or holds
    no key is an error (ValueError), never a server without keys."""
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"API key file {path}: cannot read it ({exc})") from None
    keys = [line.strip() for line in text.splitlines()]
    keys = [k for k in keys if k and not k.startswith("#")]
    if not keys:
        raise ValueError(
            f"API key file {path}: no key in it (one key per line; blank lines and # comments are ignored)"
        )
    return keys


def key_id(key: str) -> str:
    """What the server keeps of a key: its SHA-256, in hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def authorization(scope) -> bytes:
    """The raw ``Authorization`` header of an ASGI request (empty when absent)."""
    for k, v in scope["headers"]:
        if k == b"authorization":
            return v
    return b""


class ApiKeys:
    """The allowed keys, as SHA-256 digests. ``owner(header)`` compares the header's key
    with each of them (all of them, whatever matches first) in constant time, on bytes:
    a header of any bytes, ASCII or not, is a yes or a no, never an error."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [hashlib.sha256(k.encode()).digest() for k in dict.fromkeys(keys)]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def owner(self, header: bytes) -> str | None:
        """The id (:func:`key_id`) of the key that ``Authorization: Bearer KEY`` carries,
        or None when it carries none of the allowed keys."""
        scheme, _, token = header.strip().partition(b" ")
        digest = hashlib.sha256(token.strip()).digest()
        found = None
        for allowed in self._digests:
            if hmac.compare_digest(allowed, digest):
                found = allowed
        if found is None or scheme.lower() != b"bearer":
            return None
        return found.hex()
