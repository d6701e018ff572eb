"""Text generation on a Qwen2.5-0.5B-shaped decoder: rinfer vs llama.cpp vs PyTorch,
same token ids, same machine, one run.

The model has Qwen2.5-0.5B's shape (24 layers, hidden 896, 14 query and 2
key/value heads, MLP 4864, q/k/v biases, vocabulary 151936, tied embeddings,
rope theta 1e6) with random weights (seed 0), saved as a folder with the small
byte-level BPE tokenizer of tests/data/decoders/qwen2 (its ~400 entries are
enough: every engine is fed token ids, never text) and a generation_config.json
without an end-of-sequence token. The prompt is the 128 pseudo-random ids
examples/gen_timing.rs draws (seed 1), then 128 new tokens, greedy, eos ignored.

Engines, each in its own process so that no two thread pools share the cores:
- rinfer: target/release/examples/gen_timing at f32, bf16 and int8
  (RINFER_NUM_THREADS). It reports prefill tokens/s and time to first token, the
  decode tokens/s of one sequence, the aggregate decode tokens/s of 8 sequences
  decoding together, and the copy bandwidth of the machine (a STREAM-like
  parallel copy of 512 MiB, read + write bytes, best of 5) in the same process.
- llama.cpp through llama-cpp-python: the folder converted to GGUF (f32, f16,
  bf16, q8_0) by llama.cpp's own convert_hf_to_gguf.py, taken from the
  llama-cpp-python sdist of the pinned version (vendor/llama.cpp) and run in
  this process with two patches: TextModel.get_vocab_base_pre returns "qwen2"
  (the converter refuses BPE pre-tokenizers it does not know by the hash of a
  test encoding, and the cut-down tokenizer hashes differently from Qwen2's,
  whose pre-tokenizer regex it has), and Qwen2Model.set_vocab goes straight to
  the GPT-2 BPE path (it tries sentencepiece first, which is not installed, and
  only falls back on FileNotFoundError). n_threads = n_threads_batch = 2,
  n_ctx 512, n_batch 512, flash_attn left at llama-cpp-python's default (off).
  Prefill = Llama.eval of the 128-token prompt plus the argmax of its logits;
  decode = 127 single-token Llama.eval calls, each followed by a numpy argmax of
  llama_get_logits_ith(-1) (greedy; no sampler chain, so no sampling overhead);
  the KV memory is cleared between repetitions.
- PyTorch (transformers, SDPA attention, f32 only): prefill = one forward of the
  prompt (use_cache on, as generate's first step); generate(max_new_tokens=128,
  min_new_tokens=128, do_sample=False, eos_token_id=None) timed whole; decode
  tokens/s = 127 / (generate - prefill).

Token counts: 128 new tokens are one prefill (which yields the first) plus 127
single-token decode steps; every engine's decode tokens/s is 127 / (time of
those 127 steps), the count gen_timing uses.

Bytes per decoded token: every layer weight (matrices, biases, norms) plus the
LM head, plus one embedding row. rinfer's LM head precision is read from
src/models/decoder.rs (lm_logits: f32 at every precision up to 7c646ff, the
layers' precision since), its int8 matrices carry an f32 scale and an i32 sum
per output column; llama.cpp's bytes are summed from the
GGUF's tensors (the tied token_embd is its output matrix). Achieved GB/s =
bytes/token x decode tokens/s, printed next to the measured copy bandwidth.

Interleaved decode duels (--rounds, default 8): the machine's memory bandwidth
drifts, run to run and minute to minute, by more than the gap between engines, so
engines measured one after the other are compared at different bandwidths. For the
pairs rinfer f32 / llama.cpp f32, bf16 / bf16, bf16 / f16 and int8 / q8_0, both engines are
loaded once, each in its own process (gen_timing ... serve; this script with
--child llama-serve), and decode passes alternate: one pass each a round, the
order swapped every round. Each round gives a ratio of the two passes' decode
tokens/s; the duel's figure is the median of those ratios, the decode bar's figure.

Each figure is the median of --reps repetitions (rinfer: --reps runs of
gen_timing; llama.cpp: --reps prefill+decode passes after a warm-up; PyTorch:
--reps prefills and --reps generates after a warm-up). Writes
bench-results/generation_peers.json and a PNG plot.

Run through ./benches/peers/generation_peers.sh.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
# (rinfer precision, llama.cpp GGUF type) pairs whose decode is also measured interleaved
DUELS = [("f32", "f32"), ("bf16", "bf16"), ("bf16", "f16"), ("int8", "q8_0")]
VOCAB = 151_936
HIDDEN = 896
INTER = 4864
LAYERS = 24
HEADS = 14
KV_HEADS = 2
HEAD_DIM = HIDDEN // HEADS


def prompt_ids(n: int, vocab: int, seed: int) -> list[int]:
    """The ids examples/gen_timing.rs `prompt` draws (same LCG, same seed)."""
    s, out = seed, []
    for _ in range(n):
        s = (s * 6364136223846793005 + 1442695040888963407) & 0xFFFF_FFFF_FFFF_FFFF
        out.append((s >> 33) % (vocab - 1) + 1)
    return out


def build(d: pathlib.Path) -> None:
    """Saves the random Qwen2.5-0.5B-shaped folder into `d`."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=INTER,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=32768,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    model = Qwen2ForCausalLM(cfg).eval()
    model.save_pretrained(d, safe_serialization=True)
    del model
    src = REPO / "tests/data/decoders/qwen2"
    shutil.copy(src / "tokenizer.json", d / "tokenizer.json")
    tc = json.loads((src / "tokenizer_config.json").read_text())
    tc["model_max_length"] = 32768
    (d / "tokenizer_config.json").write_text(json.dumps(tc, indent=1))
    (d / "generation_config.json").write_text(json.dumps({"do_sample": False}, indent=1))


def param_counts() -> dict[str, int]:
    """Elements of the weights read per decoded token, by kind."""
    q = HIDDEN * HIDDEN
    kv = HEAD_DIM * KV_HEADS * HIDDEN
    per_layer_mat = q + 2 * kv + q + 3 * HIDDEN * INTER
    per_layer_cols = HIDDEN + 2 * HEAD_DIM * KV_HEADS + HIDDEN + 2 * INTER + HIDDEN  # output columns
    per_layer_vec = (HIDDEN + 2 * HEAD_DIM * KV_HEADS) + 2 * HIDDEN  # q/k/v biases, two norms
    return {
        "layer_matrices": LAYERS * per_layer_mat,
        "layer_output_columns": LAYERS * per_layer_cols,
        "layer_vectors": LAYERS * per_layer_vec + HIDDEN,  # + final norm
        "lm_head": VOCAB * HIDDEN,
        "embedding_row": HIDDEN,
    }


def rinfer_head_at_f32() -> bool:
    """Whether rinfer packs the LM head at f32 whatever the precision (as it did up to
    7c646ff), rather than in the layers' precision, read from src/models/decoder.rs."""
    src = (REPO / "src/models/decoder.rs").read_text()
    m = re.search(r"fn lm_logits.*?PackedLinear::from_nk\(([^;]*?)\)", src, re.DOTALL)
    if m and "Precision::F32" in m.group(1):
        return True
    if m and "self.precision" in m.group(1):
        return False
    raise SystemExit("cannot tell the precision of rinfer's LM head from src/models/decoder.rs")


def rinfer_bytes(dtype: str, head_f32: bool) -> int:
    c = param_counts()
    size = {"f32": 4, "bf16": 2, "int8": 1}[dtype]
    cols = c["layer_output_columns"] + (0 if head_f32 else VOCAB)
    scales = 8 * cols if dtype == "int8" else 0  # int8: an f32 scale and an i32 sum per output column
    head = 4 * c["lm_head"] if head_f32 else size * c["lm_head"]
    return size * c["layer_matrices"] + scales + head + 4 * (c["layer_vectors"] + c["embedding_row"])


def gguf_bytes(path: pathlib.Path) -> int:
    import gguf

    r = gguf.GGUFReader(str(path))
    sizes = {t.name: int(t.n_bytes) for t in r.tensors}
    emb = sizes.pop("token_embd.weight")
    row = emb // VOCAB
    head = sizes.pop("output.weight", emb)  # tied: token_embd is the output matrix
    return sum(sizes.values()) + head + row


# ---------------------------------------------------------------- children


def child_torch(args) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    model.generation_config.eos_token_id = None
    model.generation_config.bos_token_id = None
    model.generation_config.pad_token_id = 0
    ids = torch.tensor([prompt_ids(args.prompt, VOCAB, 1)])
    warm = torch.tensor([prompt_ids(16, VOCAB, 9)])
    kw = {"do_sample": False, "eos_token_id": None, "pad_token_id": 0}

    def gen(x, n):
        return model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, min_new_tokens=n, **kw)

    with torch.inference_mode():
        gen(warm, 2)
        model(input_ids=ids, use_cache=True)
        prefill = []
        for _ in range(args.reps):
            t = time.perf_counter()
            out = model(input_ids=ids, use_cache=True)
            out.logits[0, -1].argmax().item()
            prefill.append(time.perf_counter() - t)
        gens, tokens = [], None
        for _ in range(args.reps):
            t = time.perf_counter()
            seq = gen(ids, args.new)
            gens.append(time.perf_counter() - t)
            tokens = seq[0, args.prompt :].tolist()
    assert len(tokens) == args.new, f"generate stopped early: {len(tokens)} tokens"
    assert statistics.median(gens) > statistics.median(prefill), "generate took less than its prefill"
    p, g = statistics.median(prefill), statistics.median(gens)
    return {
        "prefill_s": p,
        "generate_s": g,
        "prefill_s_all": prefill,
        "generate_s_all": gens,
        "ttft_s": p,
        "prefill_tok_s": args.prompt / p,
        "decode_tok_s": (args.new - 1) / (g - p),
        "tokens": tokens,
        "torch": torch.__version__,
        "attn": model.config._attn_implementation,
    }


def child_llama(args) -> dict:
    import ctypes

    import llama_cpp
    import numpy as np

    llm = llama_cpp.Llama(
        model_path=args.model,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        n_ctx=512,
        n_batch=512,
        logits_all=False,
        verbose=False,
    )
    n_vocab = llm.n_vocab()
    assert n_vocab == VOCAB, n_vocab
    ctx = llm._ctx.ctx

    def argmax() -> int:
        ptr = llama_cpp.llama_get_logits_ith(ctx, -1)
        return int(np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(n_vocab,)).argmax())

    def clear():
        llm.reset()
        mem = llama_cpp.llama_get_memory(ctx)
        llama_cpp.llama_memory_clear(mem, True)

    def run(ids, n_new):
        clear()
        t0 = time.perf_counter()
        llm.eval(ids)
        tok = argmax()
        t1 = time.perf_counter()
        toks = [tok]
        for _ in range(n_new - 1):
            llm.eval([tok])
            tok = argmax()
            toks.append(tok)
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, toks

    run(prompt_ids(16, VOCAB, 9), 3)
    ids = prompt_ids(args.prompt, VOCAB, 1)
    if args.child == "llama-serve":
        print("ready", flush=True)
        for _ in sys.stdin:
            p, d, _ = run(ids, args.new)
            print(json.dumps({"ttft_s": p, "decode_s": d, "decode_tok_s": (args.new - 1) / d}), flush=True)
        return {}
    pre, dec, tokens = [], [], None
    for _ in range(args.reps):
        p, d, tokens = run(ids, args.new)
        pre.append(p)
        dec.append(d)
    p, d = statistics.median(pre), statistics.median(dec)
    return {
        "prefill_s_all": pre,
        "decode_s_all": dec,
        "ttft_s": p,
        "prefill_tok_s": args.prompt / p,
        "decode_tok_s": (args.new - 1) / d,
        "tokens": tokens,
        "llama_cpp_python": llama_cpp.__version__,
        "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
    }


def child_cmd(kind: str, model: str, args) -> list[str]:
    """This script as a peer's child process (`--child KIND`) on `model`."""
    return [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--model",
        model,
        "--threads",
        str(args.threads),
        "--prompt",
        str(args.prompt),
        "--new",
        str(args.new),
        "--reps",
        str(args.reps),
    ]


def run_child(kind: str, model: str, args, tag: str) -> dict | None:
    cmd = child_cmd(kind, model, args)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        print(f"  {tag}: not measured ({res.stderr.strip()[-600:]})", flush=True)
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- rinfer


def rinfer_run(args, model: pathlib.Path, dtype: str) -> dict | None:
    env = dict(os.environ, RINFER_NUM_THREADS=str(args.threads))
    runs = []
    for _ in range(args.reps):
        cmd = [args.binary, str(model), str(args.prompt), str(args.new), dtype, str(args.streams)]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            print(f"  rinfer {dtype}: not measured ({res.stderr.strip()[-400:]})", flush=True)
            return None
        runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
    out = {
        k: statistics.median(r[k] for r in runs)
        for k in ("ttft_s", "prefill_tok_s", "decode_tok_s", "batch_tok_s", "copy_gb_s")
    }
    out.update(isa=runs[0]["isa"], gemm=runs[0]["gemm"], runs=runs)
    return out


# ---------------------------------------------------------------- interleaved duels


class Server:
    """An engine kept loaded in a process of its own: each line written to its stdin
    times one prefill + decode pass, answered by one JSON line."""

    def __init__(self, cmd: list[str], env: dict):
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.close()
            raise RuntimeError(f"{cmd[0]} did not start (said {line!r})")

    def once(self) -> dict:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the engine process ended")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def duel(args, model: pathlib.Path, dtype: str, gguf: pathlib.Path) -> dict:
    """rinfer at `dtype` and llama.cpp on `gguf`, both loaded once, decode passes
    alternating (ABAB..., the order swapped every round) so that the machine's
    memory bandwidth, which drifts by more than the gap between engines, weighs on
    both alike. The ratio of each round's pair is taken; the figure is their median."""
    env = dict(os.environ, RINFER_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    a = Server([args.binary, str(model), str(args.prompt), str(args.new), dtype, "serve"], env)
    try:
        b = Server(child_cmd("llama-serve", str(gguf), args), env)
    except Exception:
        a.close()
        raise
    rin, lla = [], []
    try:
        for r in range(args.rounds):
            if r % 2 == 0:
                rin.append(a.once()["decode_tok_s"])
                lla.append(b.once()["decode_tok_s"])
            else:
                lla.append(b.once()["decode_tok_s"])
                rin.append(a.once()["decode_tok_s"])
    finally:
        a.close()
        b.close()
    ratios = [x / y for x, y in zip(rin, lla)]
    return {
        "rinfer": dtype,
        "llama.cpp": gguf.stem.removeprefix("model-"),
        "rounds": args.rounds,
        "rinfer_decode_tok_s": rin,
        "llama_cpp_decode_tok_s": lla,
        "ratios": ratios,
        "median_ratio": statistics.median(ratios),
        "rinfer_median": statistics.median(rin),
        "llama_cpp_median": statistics.median(lla),
    }


# ---------------------------------------------------------------- llama.cpp conversion


def convert(converter: pathlib.Path, model: pathlib.Path, outtype: str, out: pathlib.Path) -> None:
    """llama.cpp's convert_hf_to_gguf.py, in this process, patched as the docstring says."""
    if str(converter) not in sys.path:
        sys.path.insert(0, str(converter))
    import convert_hf_to_gguf as conv
    from conversion.base import TextModel
    from conversion.qwen import Qwen2Model

    TextModel.get_vocab_base_pre = lambda self, tokenizer: "qwen2"
    Qwen2Model.set_vocab = lambda self: self._set_vocab_gpt2()
    argv = sys.argv
    sys.argv = ["convert_hf_to_gguf.py", str(model), "--outtype", outtype, "--outfile", str(out)]
    try:
        conv.main()
    finally:
        sys.argv = argv


# ---------------------------------------------------------------- report


def fmt(v, spec=".1f", none="-"):
    return none if v is None else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", help="path of the gen_timing example binary")
    ap.add_argument("--converter", help="llama.cpp source folder holding convert_hf_to_gguf.py")
    ap.add_argument("--threads", type=int, default=2, help="threads of every engine")
    ap.add_argument("--prompt", type=int, default=128, help="prompt tokens")
    ap.add_argument("--new", type=int, default=128, help="new tokens per sequence")
    ap.add_argument("--streams", type=int, default=8, help="concurrent sequences of rinfer's batched run")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per measurement (median)")
    ap.add_argument("--dtypes", default="f32,bf16,int8", help="rinfer precisions")
    ap.add_argument("--gguf", default="f32,f16,bf16,q8_0", help="llama.cpp GGUF types")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    ap.add_argument("--out", default="bench-results", help="folder for JSON and PNG")
    ap.add_argument(
        "--rounds",
        type=int,
        default=8,
        help="rounds of the interleaved decode duels (rinfer and llama.cpp alternate, one pass each a round)",
    )
    ap.add_argument("--child", choices=["torch", "llama", "llama-serve"], help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        res = child_torch(args) if args.child == "torch" else child_llama(args)
        if args.child != "llama-serve":
            print(json.dumps(res))
        return
    if not args.binary or not args.converter:
        ap.error("--binary and --converter are required")

    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in pathlib.Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    print(
        f"CPU: {cpu}; {os.cpu_count()} cores; {args.threads} threads; prompt {args.prompt}, "
        f"{args.new} new tokens; median of {args.reps}; load average at start {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    notes = []
    head_f32 = rinfer_head_at_f32()  # the source the .sh just built gen_timing from
    rin, lla, tor, gbytes, gsize, duels = {}, {}, None, {}, {}, []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        d = pathlib.Path(tmp) / "qwen2.5-0.5b-shape"
        t = time.perf_counter()
        build(d)
        print(f"built {d.name} ({time.perf_counter() - t:.0f} s)", flush=True)

        if not args.no_torch:
            tor = run_child("torch", str(d), args, "PyTorch f32")
            print("  PyTorch f32 done", flush=True)
        for dtype in args.dtypes.split(","):
            r = rinfer_run(args, d, dtype)
            if r is not None:
                rin[dtype] = r
            print(f"  rinfer {dtype} done", flush=True)
        for gt in args.gguf.split(","):
            path = pathlib.Path(tmp) / f"model-{gt}.gguf"
            t = time.perf_counter()
            try:
                convert(pathlib.Path(args.converter), d, gt, path)
            except (Exception, SystemExit) as e:  # noqa: BLE001 - report and go on
                print(f"  llama.cpp {gt}: conversion failed ({e!r})", flush=True)
                notes.append(f"llama.cpp {gt}: conversion failed ({e!r})")
                continue
            print(f"  converted {gt} ({time.perf_counter() - t:.0f} s)", flush=True)
            gbytes[gt] = gguf_bytes(path)
            gsize[gt] = path.stat().st_size
            r = run_child("llama", str(path), args, f"llama.cpp {gt}")
            if r is not None:
                lla[gt] = r
            else:
                notes.append(f"llama.cpp {gt}: not measured (see the log)")
            if not any(g == gt and dt in rin for dt, g in DUELS) or args.rounds <= 0:
                path.unlink()
            print(f"  llama.cpp {gt} done", flush=True)
        for dt, gt in DUELS:
            path = pathlib.Path(tmp) / f"model-{gt}.gguf"
            if args.rounds <= 0 or dt not in rin or not path.exists():
                continue
            try:
                duels.append(duel(args, d, dt, path))
                print(f"  duel rinfer {dt} / llama.cpp {gt} done", flush=True)
            except (Exception, SystemExit) as e:  # noqa: BLE001 - report and go on
                notes.append(f"duel rinfer {dt} / llama.cpp {gt}: not measured ({e!r})")
            path.unlink()

    copy = statistics.median(r["copy_gb_s"] for r in rin.values()) if rin else None
    rows = []

    def row(engine, prec, r, nbytes):
        if r is None:
            return
        gbs = nbytes * r["decode_tok_s"] / 1e9
        rows.append(
            {
                "engine": engine,
                "precision": prec,
                "ttft_ms": r["ttft_s"] * 1e3,
                "prefill_tok_s": r["prefill_tok_s"],
                "decode_tok_s": r["decode_tok_s"],
                "batch_tok_s": r.get("batch_tok_s"),
                "bytes_per_token": nbytes,
                "achieved_gb_s": gbs,
                "of_copy_bw": gbs / copy if copy else None,
            }
        )

    for dt, r in rin.items():
        row("rinfer", dt, r, rinfer_bytes(dt, head_f32))
    for gt, r in lla.items():
        row("llama.cpp", gt, r, gbytes[gt])
    if tor is not None:
        row("PyTorch", "f32", tor, rinfer_bytes("f32", True))

    print()
    print(f"load average at the end (1/5/15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"copy bandwidth (gen_timing, 512 MiB parallel copy, read+write, {args.threads} threads): "
        + (
            ", ".join(f"{dt} run {r['copy_gb_s']:.1f}" for dt, r in rin.items()) + f" GB/s; median {copy:.1f} GB/s"
            if rin
            else "not measured"
        )
    )
    hdr = f"{'engine':10s} {'prec':5s} {'TTFT ms':>8s} {'prefill tok/s':>13s} {'decode tok/s':>12s} {f'{args.streams}-stream tok/s':>15s} {'MB/token':>9s} {'GB/s':>6s} {'of copy':>7s}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(
            f"{r['engine']:10s} {r['precision']:5s} {r['ttft_ms']:8.0f} {r['prefill_tok_s']:13.1f} {r['decode_tok_s']:12.2f} "
            f"{fmt(r['batch_tok_s'], '15.2f', ' ' * 14 + '-')} {r['bytes_per_token'] / 1e6:9.0f} {r['achieved_gb_s']:6.1f} "
            f"{fmt(r['of_copy_bw'] and 100 * r['of_copy_bw'], '6.0f', '     -')}%"
        )

    pairs = [("f32", "f32"), ("bf16", "bf16"), ("bf16", "f16"), ("int8", "q8_0")]
    ratios = []
    print()
    print("rinfer / llama.cpp (>1: rinfer faster)   decode   prefill")
    for a, b in pairs:
        if a in rin and b in lla:
            dr = rin[a]["decode_tok_s"] / lla[b]["decode_tok_s"]
            pr = rin[a]["prefill_tok_s"] / lla[b]["prefill_tok_s"]
            ratios.append({"rinfer": a, "llama.cpp": b, "decode": dr, "prefill": pr})
            print(f"  rinfer {a:4s} / llama.cpp {b:4s}                {dr:6.2f}x  {pr:6.2f}x")
        else:
            print(f"  rinfer {a:4s} / llama.cpp {b:4s}                not measured")
    if duels:
        print()
        print(
            f"interleaved decode, {args.rounds} rounds (both engines loaded; one pass each a round, "
            "order swapped every round): median of the per-round ratios"
        )
        for du in duels:
            rs = du["ratios"]
            print(
                f"  rinfer {du['rinfer']:4s} / llama.cpp {du['llama.cpp']:4s}   {du['median_ratio']:6.2f}x "
                f"(rounds {min(rs):.2f}-{max(rs):.2f}; tok/s medians {du['rinfer_median']:.2f} / {du['llama_cpp_median']:.2f})"
            )
    if tor is not None:
        print("rinfer / PyTorch f32                      decode   prefill")
        for a, r in rin.items():
            print(
                f"  rinfer {a:4s} / PyTorch f32               {r['decode_tok_s'] / tor['decode_tok_s']:6.2f}x  {r['prefill_tok_s'] / tor['prefill_tok_s']:6.2f}x"
            )
    print(f"rinfer {args.streams}-stream aggregate / single-sequence decode")
    for a, r in rin.items():
        print(
            f"  {a:4s} {r['batch_tok_s']:8.2f} / {r['decode_tok_s']:.2f} = {r['batch_tok_s'] / r['decode_tok_s']:.2f}x"
        )

    agree = {}
    if tor is not None:
        for gt, r in lla.items():
            same = 0
            for x, y in zip(tor["tokens"], r["tokens"]):
                if x != y:
                    break
                same += 1
            agree[gt] = same
        print(
            "greedy tokens equal to PyTorch f32 (leading run of "
            + str(args.new)
            + "): "
            + ", ".join(f"llama.cpp {gt} {n}" for gt, n in agree.items())
        )
    c = param_counts()
    print(
        f"weights read per token: {c['layer_matrices'] / 1e6:.1f} M layer matrix elements, "
        f"{c['lm_head'] / 1e6:.1f} M LM head, one embedding row; rinfer's LM head "
        + ("at f32 at every precision" if head_f32 else "in the layers' precision")
        + " (src/models/decoder.rs at the start); llama.cpp's from the GGUF tensors"
    )
    notes.append(
        "rinfer's generated tokens are not printed by gen_timing, so only llama.cpp's are checked against PyTorch"
    )
    notes.append("PyTorch runs at f32 only (the brief's baseline); its bytes/token are the f32 ones")
    notes.append(
        "the copy bandwidth counts the bytes read plus written by a copy; a read-only weight stream can exceed it"
    )
    if "llama_cpp_python" in next(iter(lla.values()), {}):
        print(
            f"llama-cpp-python {next(iter(lla.values()))['llama_cpp_python']}: {next(iter(lla.values()))['system_info']}"
        )
    if tor is not None:
        print(f"torch {tor['torch']} ({tor['attn']} attention)")
    if rin:
        r0 = next(iter(rin.values()))
        print(f"rinfer: isa {r0['isa']}, gemm {r0['gemm']}")
    for n in notes:
        print(f"note: {n}")

    out = pathlib.Path(args.out)
    out.mkdir(exist_ok=True)
    result = {
        "cpu": cpu,
        "threads": args.threads,
        "prompt_tokens": args.prompt,
        "new_tokens": args.new,
        "streams": args.streams,
        "reps": args.reps,
        "copy_gb_s": copy,
        "rows": rows,
        "ratios_rinfer_over_llama_cpp": ratios,
        "interleaved_decode": duels,
        "rinfer": rin,
        "llama_cpp": {k: {kk: vv for kk, vv in v.items() if kk != "tokens"} for k, v in lla.items()},
        "gguf_file_bytes": gsize,
        "torch": {k: v for k, v in (tor or {}).items() if k != "tokens"},
        "greedy_agreement_with_torch": agree,
        "param_counts": c,
        "rinfer_lm_head_f32": head_f32,
        "notes": notes,
    }
    (out / "generation_peers.json").write_text(json.dumps(result, indent=1))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 4 if duels else 3, figsize=(22 if duels else 17, 4.4))
        labels = [f"{r['engine']}\n{r['precision']}" for r in rows]
        colors = [{"rinfer": "tab:blue", "llama.cpp": "tab:orange", "PyTorch": "tab:green"}[r["engine"]] for r in rows]
        xs = range(len(rows))
        for ax, key, title in (
            (axes[0], "prefill_tok_s", f"prefill tokens/s ({args.prompt}-token prompt)"),
            (axes[1], "decode_tok_s", "decode tokens/s (one sequence)"),
            (axes[2], "achieved_gb_s", "decode weight GB/s"),
        ):
            ax.bar(xs, [r[key] for r in rows], color=colors)
            ax.set_xticks(list(xs), labels, fontsize=6.5)
            ax.set_title(title, fontsize=9)
        batch = [(i, r["batch_tok_s"]) for i, r in enumerate(rows) if r["batch_tok_s"]]
        if batch:
            axes[1].bar(
                [i for i, _ in batch],
                [v for _, v in batch],
                fill=False,
                hatch="//",
                edgecolor="k",
                label=f"rinfer {args.streams}-stream aggregate",
            )
        axes[1].legend(fontsize=7)
        if copy:
            axes[2].axhline(copy, color="k", linestyle="--", label=f"copy bandwidth {copy:.1f} GB/s")
            axes[2].legend(fontsize=7)
        if duels:
            ax = axes[3]
            for du, col in zip(duels, ("tab:red", "tab:purple", "tab:olive", "tab:brown")):
                rounds = range(1, len(du["ratios"]) + 1)
                ax.plot(rounds, du["rinfer_decode_tok_s"], "o-", color=col, label=f"rinfer {du['rinfer']}")
                ax.plot(rounds, du["llama_cpp_decode_tok_s"], "s--", color=col, label=f"llama.cpp {du['llama.cpp']}")
            ax.set_xlabel("round", fontsize=8)
            ax.set_title("interleaved decode tokens/s, round by round", fontsize=9)
            ax.legend(fontsize=6.5)
        fig.suptitle(f"Qwen2.5-0.5B-shaped decoder, {args.threads} threads, {cpu}", fontsize=10)
        fig.tight_layout()
        fig.savefig(out / "generation_peers.png", dpi=110)
        print(f"wrote {out / 'generation_peers.json'} and {out / 'generation_peers.png'}")
    except ImportError:
        print(f"wrote {out / 'generation_peers.json'} (no matplotlib: no plot)")


if __name__ == "__main__":
    main()
