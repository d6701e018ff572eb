"""Token ids back to text for TEI's ``POST /decode``, as Hugging Face ``tokenizers``'
``Tokenizer.decode(ids, skip_special_tokens)`` computes it, read from the folder's
``tokenizer.json``: ids to token strings (the model's vocabulary and the added
tokens, special ones skipped on request), then the file's decoder: WordPiece (with
its cleanup), ByteLevel, Metaspace, BPEDecoder, and Sequence of Replace,
ByteFallback, Fuse, Strip. The extension has no decode entry; this is the same
algorithm, in Python, for the decoders those files use."""

from __future__ import annotations

import json
import pathlib
import re

from .errors import ApiError


def _bytes_to_unicode() -> dict[str, int]:
    """GPT-2's byte <-> printable character table (ByteLevel), character -> byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


_CHAR_BYTES = _bytes_to_unicode()
_BYTE_TOKEN = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def _cleanup(s: str) -> str:
    """tokenizers' WordPiece ``cleanup`` (applied per token)."""
    for a, b in (
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" do not", " don't"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ):
        s = s.replace(a, b)
    return s


def _chain(cfg: dict | None, tokens: list[str]) -> list[str]:
    """One decoder's ``decode_chain``: tokens in, tokens out."""
    if cfg is None:
        return tokens
    kind = cfg.get("type")
    if kind == "Sequence":
        for d in cfg.get("decoders", []):
            tokens = _chain(d, tokens)
        return tokens
    if kind == "WordPiece":
        prefix, cleanup = cfg.get("prefix", "##"), cfg.get("cleanup", True)
        out = []
        for i, t in enumerate(tokens):
            if i != 0:
                t = t.replace(prefix, "", 1) if t.startswith(prefix) else " " + t
            out.append(_cleanup(t) if cleanup else t)
        return out
    if kind == "ByteLevel":
        raw = bytearray()
        for t in tokens:
            if all(c in _CHAR_BYTES for c in t):
                raw.extend(_CHAR_BYTES[c] for c in t)
            else:
                raw.extend(t.encode())
        return [raw.decode("utf-8", errors="replace")]
    if kind == "Metaspace":
        rep = cfg.get("replacement", "▁")
        scheme = cfg.get("prepend_scheme")
        if scheme is None:
            scheme = "always" if cfg.get("add_prefix_space", True) else "never"
        out = []
        for i, t in enumerate(tokens):
            t = t.replace(rep, " ")
            if i == 0 and scheme != "never" and t.startswith(" "):
                t = t[1:]
            out.append(t)
        return out
    if kind == "BPEDecoder":
        suffix = cfg.get("suffix", "</w>")
        return [t.replace(suffix, "" if i == len(tokens) - 1 else " ") for i, t in enumerate(tokens)]
    if kind == "Replace":
        pattern = cfg.get("pattern", {})
        if "String" not in pattern:
            raise ApiError(
                422, "tokenizer", "this tokenizer's Replace decoder uses a regex, which rinfer cannot decode"
            )
        return [t.replace(pattern["String"], cfg.get("content", "")) for t in tokens]
    if kind == "ByteFallback":
        out, pending = [], bytearray()
        for t in tokens:
            m = _BYTE_TOKEN.match(t)
            if m:
                pending.append(int(m.group(1), 16))
                continue
            if pending:
                out.append(pending.decode("utf-8", errors="replace"))
                pending = bytearray()
            out.append(t)
        if pending:
            out.append(pending.decode("utf-8", errors="replace"))
        return out
    if kind == "Fuse":
        return ["".join(tokens)]
    if kind == "Strip":
        content, start, stop = cfg.get("content", " "), cfg.get("start", 0), cfg.get("stop", 0)
        out = []
        for t in tokens:
            chars = list(t)
            lo = 0
            while lo < min(start, len(chars)) and chars[lo] == content:
                lo += 1
            hi = len(chars)
            for k in range(min(stop, len(chars))):
                if chars[len(chars) - k - 1] != content:
                    break
                hi = len(chars) - k - 1
            out.append("".join(chars[lo:hi]))
        return out
    raise ApiError(422, "tokenizer", f"this tokenizer's decoder ({kind}) is not one rinfer can decode")


class Decoder:
    """The decoding half of a folder's ``tokenizer.json``."""

    def __init__(self, path: str | pathlib.Path) -> None:
        cfg = json.loads((pathlib.Path(path) / "tokenizer.json").read_text(encoding="utf-8"))
        model = cfg.get("model", {})
        vocab = model.get("vocab", {})
        self.vocab: dict[int, str] = {}
        if isinstance(vocab, dict):
            self.vocab = {int(i): t for t, i in vocab.items()}
        else:  # Unigram: [[token, score], ...] by id
            self.vocab = {i: row[0] for i, row in enumerate(vocab)}
        self.special: set[int] = set()
        for tok in cfg.get("added_tokens", []):
            self.vocab[int(tok["id"])] = tok["content"]
            if tok.get("special"):
                self.special.add(int(tok["id"]))
        self.decoder = cfg.get("decoder")

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        tokens = []
        for i in ids:
            if skip_special_tokens and i in self.special:
                continue
            token = self.vocab.get(i)
            if token is None:
                raise ApiError(422, "tokenizer", f"token id {i} is not in the model's vocabulary", param="ids")
            tokens.append(token)
        if self.decoder is None:
            return " ".join(tokens)
        return "".join(_chain(self.decoder, tokens))
