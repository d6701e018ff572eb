"""Security hardening: API keys (several, from flags, the environment or a file,
compared in constant time on bytes), CORS off unless configured, and a request's
`model` that never reaches the filesystem. Job scoping by key is in test_jobs.py."""

from __future__ import annotations

import os
import pathlib
import sys

import pytest
from fastapi.testclient import TestClient
from rinfer.server import Settings, create_app
from rinfer.server.auth import ApiKeys, key_id

TINY = pathlib.Path(__file__).resolve().parents[2] / "tests/data/models"


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_api_keys_compare_every_key_on_bytes():
    keys = ApiKeys(["one", "two", "twö"])
    assert keys.owner(b"Bearer one") == key_id("one")
    assert keys.owner(b"bearer two") == key_id("two")  # the scheme is case-insensitive (RFC 7235)
    assert keys.owner("Bearer twö".encode()) == key_id("twö")
    for bad in (b"", b"Bearer", b"Bearer ", b"Bearer on", b"Bearer one1", b"Basic one", b"one", b"Bearer \xe9\xff"):
        assert keys.owner(bad) is None, bad
    assert not ApiKeys([]) and ApiKeys(["x"])


def test_several_keys_from_the_environment_and_a_file(model_dir, tmp_path, monkeypatch):
    keyfile = tmp_path / "keys"
    keyfile.write_text("# rotated monthly\n\n  from-file-1  \nfrom-file-2\n#not-a-key\n")
    monkeypatch.setenv("RINFER_API_KEY", "env-1, env-2")
    monkeypatch.setenv("RINFER_API_KEY_FILE", str(keyfile))
    s = Settings(model_path=str(model_dir))
    assert s.api_keys == ("env-1", "env-2", "from-file-1", "from-file-2")
    with TestClient(create_app(s)) as c:
        for key in s.api_keys:
            assert c.get("/info", headers=bearer(key)).status_code == 200, key
            assert c.post("/embed", json={"inputs": "x"}, headers=bearer(key)).status_code == 200, key
        for key in ("#not-a-key", "rotated monthly", "env-1, env-2", ""):
            assert c.get("/info", headers=bearer(key)).status_code == 401, key
            assert c.post("/embed", json={"inputs": "x"}, headers=bearer(key)).status_code == 401, key
        assert c.get("/health").status_code == 200


def test_a_non_ascii_authorization_header_is_401_not_500(model_dir):
    """Found while reworking the key check: the key was compared with
    secrets.compare_digest on str, which raises TypeError for non-ASCII text (a 500)."""
    with TestClient(
        create_app(Settings(model_path=str(model_dir), api_key="s3cret")), raise_server_exceptions=False
    ) as c:
        for header in (b"Bearer s3cr\xe9t", "Bearer sécret".encode(), b"\xff\xfe"):
            for method, path in (("GET", "/info"), ("GET", "/v1/models"), ("POST", "/embed"), ("POST", "/tokenize")):
                r = c.request(method, path, json={"inputs": "x"}, headers={"authorization": header})
                assert r.status_code == 401, (method, path, header, r.status_code)


@pytest.mark.parametrize(
    "content, why",
    [(None, "cannot read it"), ("", "no key in it"), ("# only a comment\n\n   \n", "no key in it")],
)
def test_a_bad_key_file_stops_the_start_with_a_clear_error(tmp_path, content, why, monkeypatch, capsys):
    from rinfer import cli

    path = tmp_path / "keys"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=why):
        Settings(api_key_file=str(path))
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: pytest.fail("the server started"))
    assert cli.main(["serve", "--api-key", "do-not-print-me", "--api-key-file", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"API key file {path}: {why}" in err and "do-not-print-me" not in err and "Traceback" not in err


def test_a_key_file_that_cannot_be_read_is_an_error(tmp_path):
    """A folder, or bytes that are not UTF-8 (as root, a chmod 0 file is still readable)."""
    with pytest.raises(ValueError, match="cannot read it"):
        Settings(api_key_file=str(tmp_path))
    path = tmp_path / "keys"
    path.write_bytes(b"\xff\xfe\x00k\n")
    with pytest.raises(ValueError, match="cannot read it"):
        Settings(api_key_file=str(path))


def test_cli_api_key_repeats_and_adds_the_file(tmp_path, monkeypatch):
    from rinfer import cli

    keyfile = tmp_path / "keys"
    keyfile.write_text("c\n")
    seen = {}
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.setdefault("settings", app.state.settings))
    monkeypatch.delenv("RINFER_API_KEY", raising=False)
    monkeypatch.delenv("RINFER_API_KEY_FILE", raising=False)
    assert cli.main(["serve", "--api-key", "a", "--api-key", "b", "--api-key-file", str(keyfile)]) == 0
    assert seen["settings"].api_keys == ("a", "b", "c")
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["serve"].format_help()
    for words in ("--api-key KEY", "repeat it", "RINFER_API_KEY=KEY1,KEY2", "--api-key-file PATH", "# are ignored"):
        assert words in " ".join(help_text.split()), words


def test_cors_is_off_unless_origins_are_configured(model_dir):
    origin = {"Origin": "http://elsewhere.test"}
    preflight = {**origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    with TestClient(create_app(Settings(model_path=str(model_dir)))) as c:
        r = c.post("/embed", json={"inputs": "x"}, headers=origin)
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
        r = c.options("/embed", headers=preflight)
        assert "access-control-allow-origin" not in r.headers and r.status_code in (404, 405)
    s = Settings(model_path=str(model_dir), cors_origins=["http://elsewhere.test"], api_key="k")
    with TestClient(create_app(s)) as c:
        r = c.post("/embed", json={"inputs": "x"}, headers={**origin, **bearer("k")})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://elsewhere.test"
        r = c.options("/embed", headers=preflight)  # a preflight carries no key: CORS answers it
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://elsewhere.test"
        r = c.post("/embed", json={"inputs": "x"}, headers={"Origin": "http://other.test", **bearer("k")})
        assert "access-control-allow-origin" not in r.headers


class FileWatch:
    """Records every file the process opens, lists or stats whose path names one of
    `needles` (audit hooks for open/listdir/scandir, and os.stat wrapped)."""

    def __init__(self, needles: list[str]) -> None:
        self.needles, self.seen, self.on = needles, [], False

    def __call__(self, event: str, args) -> None:
        if self.on and event in ("open", "os.listdir", "os.scandir") and args:
            self.note(event, args[0])

    def note(self, event, path) -> None:
        text = os.fsdecode(path) if isinstance(path, str | bytes | os.PathLike) else str(path)
        if any(n in text for n in self.needles):
            self.seen.append((event, text))


_WATCH = FileWatch([])
sys.addaudithook(_WATCH)  # hooks cannot be removed: this one is idle unless a test turns it on


@pytest.fixture()
def watch(monkeypatch):
    real_stat = os.stat

    def stat(path, *a, **kw):
        if _WATCH.on:
            _WATCH.note("os.stat", path)
        return real_stat(path, *a, **kw)

    monkeypatch.setattr(os, "stat", stat)
    _WATCH.seen = []
    yield _WATCH
    _WATCH.on = False


def test_a_requests_model_never_touches_the_filesystem(watch, tmp_path):
    """Several models: an unknown `model` (a relative path out of the tree, an absolute
    path, even the folder of a real model that is not served) is a 404
    model_not_found, and nothing under that name is opened or even looked at."""
    real_but_unserved = str(TINY / "relu-max")
    names = ["../../etc/passwd", "/etc/passwd", real_but_unserved, "~/.ssh/id_rsa", "gelu-mean/../../../etc"]
    watch.needles = ["passwd", "relu-max", ".ssh", "/etc"]
    watch.on = True  # the watch sees what it should
    pathlib.Path("/etc/passwd").exists()
    (TINY / "relu-max" / "config.json").read_bytes()
    assert [e for e, _ in watch.seen] == ["os.stat", "open"]
    watch.on, watch.seen = False, []
    s = Settings(models=[f"first={TINY / 'gelu-mean'}", f"second={TINY / 'bf16-mean'}"])
    with TestClient(create_app(s)) as c:
        watch.on = True
        for name in names:
            r = c.post("/v1/embeddings", json={"input": "x", "model": name})
            assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found", (name, r.text)
            r = c.post("/embeddings", json={"input": "x", "model": name})
            assert r.status_code == 404, name
            r = c.post("/v1/rerank", json={"query": "q", "documents": ["a"], "model": name})
            assert r.status_code == 404, name
            r = c.get(f"/v1/models/{name}")
            assert r.status_code == 404, name
        for path in ("/models/..%2F..%2Fetc%2Fpasswd/embed", "/models/%2Fetc%2Fpasswd/embed", "/models/relu-max/embed"):
            assert c.post(path, json={"inputs": "x"}).status_code == 404, path
        assert c.post("/v1/embeddings", json={"input": "x", "model": "second"}).json()["model"] == "second"
        watch.on = False
    assert watch.seen == []
    # One model answers any name (as TEI and OpenAI clients expect), still without a look at the disk.
    with TestClient(create_app(Settings(model_path=str(TINY / "gelu-mean")))) as c:
        watch.on = True
        for name in names:
            r = c.post("/v1/embeddings", json={"input": "x", "model": name})
            assert r.status_code == 200 and r.json()["model"] == "gelu-mean", name
        watch.on = False
    assert watch.seen == []
