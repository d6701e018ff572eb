"""Writes the seed corpus of the fuzz targets (tests/fuzz/corpus/<target>/seed-*).

The input formats are those of rinfer::fuzzing (src/fuzzing.rs). Run from the
repository root: python3 tests/fuzz/seeds.py. Deterministic; the files are
committed, and tests/fuzz_regressions.rs replays them in `cargo test`.
"""

import json
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fuzz" / "corpus"
DATA = ROOT / "tests" / "data"


def write(target: str, name: str, data: bytes) -> None:
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(data)


def safetensors(tensors: dict, metadata: dict | None = None) -> bytes:
    """A safetensors file: {name: (dtype, shape, raw bytes)}."""
    header: dict = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    blob = b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {
            "dtype": dtype,
            "shape": shape,
            "data_offsets": [len(blob), len(blob) + len(raw)],
        }
        blob += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text)) + text + blob


def seeds_safetensors() -> None:
    f32 = struct.pack("<6f", 1, -2, 3.5, 0, 1e-3, 7)
    f16 = struct.pack("<4e", 1, -2, 0.5, 65504)
    bf16 = bytes([0x80, 0x3F, 0x00, 0xC0])
    one = safetensors(
        {
            "model.w": ("F32", [2, 3], f32),
            "b": ("F16", [4], f16),
            "c": ("BF16", [2], bf16),
            "i": ("I64", [1], struct.pack("<q", -1)),
            "empty": ("F32", [0, 5], b""),
            "scalar": ("F32", [], struct.pack("<f", 2.0)),
        },
        {"format": "pt"},
    )
    write("safetensors_header", "tensors", b"\x00" + one)
    write("safetensors_header", "empty-header", b"\x00" + safetensors({}))
    write("safetensors_header", "short", b"\x00" + struct.pack("<Q", 2) + b"{}")
    shard = safetensors({"model.w": ("F32", [2, 3], f32), "x": ("F16", [4], f16)})
    index = json.dumps(
        {"metadata": {}, "weight_map": {"model.w": "shard.safetensors", "x": "shard.safetensors"}}
    ).encode()
    write("safetensors_header", "sharded", b"\x01" + struct.pack("<H", len(index)) + index + shard)


def seeds_model_config() -> None:
    files = [
        "config.json",
        "modules.json",
        "1_Pooling/config.json",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
    ]
    for group in ["models", "families", "st", "decoders"]:
        for folder in sorted((DATA / group).iterdir()):
            if not (folder / "config.json").is_file():
                continue
            parts = [(folder / f).read_bytes() if (folder / f).is_file() else b"" for f in files]
            write("model_config", f"{group}-{folder.name}", b"\x00".join(parts).rstrip(b"\x00"))


def seeds_tokenizer() -> None:
    texts = {
        "english": "The cat sits on the mat. A cat rests on a rug!",
        "batch": "first text\x00second, longer text with more words\x00\x00last",
        "multilingual": "Größe café naïve 東京タワー Привет мир مرحبا 😀👍🏽 e\u0301",
        "long": " ".join(["tokenization"] * 80),
        "specials": "[CLS] [SEP] [MASK] <s> </s> <unk> <|endoftext|> <|im_start|>user",
    }
    for i, (name, text) in enumerate(texts.items()):
        for tok in range(3):
            write("tokenizer", f"{name}-{tok}", bytes([tok, i % 2]) + text.encode())
    write("tokenizer", "invalid-utf8", bytes([0, 0]) + b"ab\xff\xfe\xc3(\xed\xa0\x80cd")


def ids(values: list[int]) -> bytes:
    return b"".join(struct.pack("<H", v) for v in values)


def seeds_encode_ids() -> None:
    # model, n, then per sequence: length byte, ids (u16); then options.
    write("encode_ids", "bert", bytes([0, 2, 5]) + ids([2, 10, 11, 12, 3]) + bytes([3]) + ids([2, 7, 3]) + bytes([1, 2, 0]))
    write("encode_ids", "qwen3", bytes([1, 1, 4]) + ids([5, 6, 7, 8]) + bytes([0, 1, 1, 8]))
    write("encode_ids", "splade", bytes([2, 1, 3]) + ids([2, 9, 3]) + bytes([0, 0, 0]))
    write("encode_ids", "generator", bytes([3, 1, 4]) + ids([5, 6, 7, 8]) + bytes([0, 2]))
    write("encode_ids", "out-of-vocab", bytes([0, 1, 3]) + ids([2, 0xE003, 3]) + bytes([0, 0, 0]))
    write("encode_ids", "huge-id", bytes([0, 1, 2]) + ids([0xFFFF, 3]) + bytes([0, 0, 0]))
    write("encode_ids", "empty", bytes([0, 2, 0, 2]) + ids([2, 3]) + bytes([0, 0, 0]))
    write("encode_ids", "too-long", bytes([0, 1, 255, 1]) + ids([5] * 66) + bytes([0, 0, 0]))


def string(s: str) -> bytes:
    b = s.encode()
    return bytes([len(b)]) + b


def seeds_python_args() -> None:
    f32 = lambda x: struct.pack("<f", x)  # noqa: E731
    f64 = lambda x: struct.pack("<d", x)  # noqa: E731
    u64 = lambda x: struct.pack("<Q", x)  # noqa: E731
    write("python_args", "load", bytes([0, 1]) + string("bf16") + b"\x01" + f32(0.99) + b"\x01" + u64(2))
    write("python_args", "batcher", bytes([1]) + u64(16384) + f64(5.0) + u64(4096))
    write("python_args", "deadline", bytes([2]) + f64(1.5))
    write("python_args", "ids-i64", bytes([3, 1]) + struct.pack("<3q", 1, 2**32 - 1, 7))
    write("python_args", "ids-i32", bytes([3, 0]) + struct.pack("<3i", 1, -1, 7))
    write("python_args", "isa", bytes([4]) + string(" AVX2 "))
    sampling = (
        bytes([5])
        + u64(4)  # max_tokens
        + f32(0.7)  # temperature
        + u64(5)  # top_k
        + f32(0.9)  # top_p
        + f32(0.05)  # min_p
        + f32(1.1)  # repetition_penalty
        + f32(0.5)  # presence_penalty
        + f32(0.2)  # frequency_penalty
        + b"\x01"
        + u64(42)  # seed
        + b"\x00"  # ignore_eos
        + b"\x01\x03"  # logprobs
        + b"\x01"
        + struct.pack("<I", 5)
        + f32(2.0)  # logit_bias
        + b"\x01"
        + struct.pack("<I", 9)  # stop_token_ids
        + b"\x01"
        + string("the")  # stop
        + string("Once upon a time")
    )
    write("python_args", "sampling", sampling)
    write(
        "python_args",
        "chat",
        bytes([6, 2]) + string("system") + string("Be brief.") + string("user") + string("Hi there"),
    )
    write(
        "python_args",
        "encode",
        bytes([7, 1, 1]) + u64(2) + b"\x00" + b"\x01" + string("query: ") + b"\x01" + u64(16)
        + bytes([2]) + string("a cat") + string("a dog"),
    )


if __name__ == "__main__":
    seeds_safetensors()
    seeds_model_config()
    seeds_tokenizer()
    seeds_encode_ids()
    seeds_python_args()
