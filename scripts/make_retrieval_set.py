"""Writes tests/data/retrieval.json: 500 corpus texts and 50 queries for the
reduced-precision retrieval check (tests/lowp_model.rs).

The texts are the first sentences of docstrings of the Python standard library:
real, varied English prose about many topics, available offline, and fixed for a
given Python version (the output is committed, so the tests never run this).

usage: python scripts/make_retrieval_set.py
"""

import importlib
import inspect
import json
import pathlib
import re
import sys
import warnings

MODULES = [
    "argparse",
    "asyncio",
    "base64",
    "bisect",
    "calendar",
    "collections",
    "concurrent.futures",
    "configparser",
    "contextlib",
    "copy",
    "csv",
    "datetime",
    "decimal",
    "difflib",
    "email",
    "email.message",
    "fractions",
    "ftplib",
    "functools",
    "gzip",
    "hashlib",
    "heapq",
    "hmac",
    "html.parser",
    "http.client",
    "http.cookies",
    "imaplib",
    "inspect",
    "ipaddress",
    "itertools",
    "json",
    "logging",
    "lzma",
    "mailbox",
    "math",
    "mimetypes",
    "multiprocessing",
    "numbers",
    "operator",
    "os",
    "pathlib",
    "pickle",
    "platform",
    "poplib",
    "pprint",
    "queue",
    "random",
    "re",
    "sched",
    "secrets",
    "selectors",
    "shelve",
    "shlex",
    "shutil",
    "signal",
    "smtplib",
    "socket",
    "sqlite3",
    "ssl",
    "statistics",
    "string",
    "struct",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "time",
    "timeit",
    "tokenize",
    "traceback",
    "typing",
    "unittest",
    "urllib.parse",
    "urllib.request",
    "uuid",
    "warnings",
    "wave",
    "weakref",
    "xml.etree.ElementTree",
    "zipfile",
    "zlib",
]


def first_sentence(doc: str) -> str | None:
    text = " ".join(doc.strip().split())
    m = re.match(r"(.+?[.!?])(\s|$)", text)
    s = m.group(1) if m else text
    if not 40 <= len(s) <= 220 or not s[0].isupper() or "(" in s[:20] or ">>>" in s:
        return None
    return s


def main() -> None:
    warnings.simplefilter("ignore", DeprecationWarning)
    seen: set[str] = set()
    texts: list[str] = []
    for name in MODULES:
        mod = importlib.import_module(name)
        for attr in sorted(dir(mod)):
            if attr.startswith("_"):
                continue
            obj = getattr(mod, attr, None)
            objs = [obj]
            if inspect.isclass(obj):
                objs += [getattr(obj, m, None) for m in sorted(vars(obj)) if not m.startswith("_")]
            for o in objs:
                doc = inspect.getdoc(o) if o is not None else None
                s = first_sentence(doc) if doc else None
                if s and s not in seen:
                    seen.add(s)
                    texts.append(s)
    if len(texts) < 550:
        sys.exit(f"only {len(texts)} texts found")
    # 50 queries and 500 corpus texts, each spread evenly over all modules.
    qstep = len(texts) // 50
    queries = texts[qstep // 2 :: qstep][:50]
    qset = set(queries)
    rest = [t for t in texts if t not in qset]
    corpus = [rest[i * len(rest) // 500] for i in range(500)]
    out = pathlib.Path(__file__).resolve().parent.parent / "tests/data/retrieval.json"
    out.write_text(
        json.dumps(
            {
                "made_by": "scripts/make_retrieval_set.py, Python " + ".".join(map(str, sys.version_info[:3])),
                "queries": queries,
                "corpus": corpus,
            },
            indent=1,
            ensure_ascii=False,
        )
        + "\n"
    )
    print(f"{len(queries)} queries, {len(corpus)} corpus texts -> {out}")


if __name__ == "__main__":
    main()
