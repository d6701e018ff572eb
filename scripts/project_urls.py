"""Writes `[project.urls]` into pyproject.toml from the repository the build runs in.

The repository's public address is known only where it is hosted, so the release
workflow (.github/workflows/wheels.yml) runs this before building, with GitHub's
`GITHUB_SERVER_URL` and `GITHUB_REPOSITORY`; nothing here guesses an address. The
table is replaced if present, so running twice changes nothing.

    python scripts/project_urls.py [PYPROJECT]    # default: pyproject.toml
"""

from __future__ import annotations

import os
import pathlib
import re
import sys

import tomllib

HEADER = "[project.urls]"


def urls(server: str, repository: str) -> dict[str, str]:
    if not re.fullmatch(r"https://[A-Za-z0-9.-]+(:\d+)?", server):
        raise ValueError(f"GITHUB_SERVER_URL must be an https origin, got {server!r}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+", repository):
        raise ValueError(f"GITHUB_REPOSITORY must be owner/name, got {repository!r}")
    base = f"{server}/{repository}"
    return {
        "Homepage": base,
        "Documentation": f"{base}#readme",
        "Source": base,
        "Issues": f"{base}/issues",
        "Changelog": f"{base}/releases",
    }


def with_urls(text: str, table: dict[str, str]) -> str:
    """`text` (a pyproject.toml) with its `[project.urls]` table replaced by `table`."""
    lines = text.splitlines()
    out: list[str] = []
    skipping = False
    for line in lines:
        if line.strip() == HEADER:
            skipping = True
            continue
        if skipping and line.lstrip().startswith("["):
            skipping = False
        if not skipping:
            out.append(line)
    while out and not out[-1].strip():
        out.pop()
    out += ["", HEADER] + [f'{k} = "{v}"' for k, v in table.items()]
    new = "\n".join(out) + "\n"
    parsed = tomllib.loads(new)
    if parsed["project"].get("urls") != table:
        raise RuntimeError("the written [project.urls] does not read back as written")
    return new


def main(argv: list[str]) -> int:
    path = pathlib.Path(argv[1] if len(argv) > 1 else "pyproject.toml")
    server = os.environ.get("GITHUB_SERVER_URL", "")
    repository = os.environ.get("GITHUB_REPOSITORY", "")
    if not server or not repository:
        print("project_urls: GITHUB_SERVER_URL and GITHUB_REPOSITORY are not set; nothing written", file=sys.stderr)
        return 2
    try:
        table = urls(server, repository)
    except ValueError as e:
        print(f"project_urls: {e}", file=sys.stderr)
        return 2
    path.write_text(with_urls(path.read_text(), table))
    print(f"project_urls: {path}: {', '.join(f'{k} {v}' for k, v in table.items())}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
