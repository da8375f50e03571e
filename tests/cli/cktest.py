"""Shared helpers for the end-to-end CLI tests (tests/cli/test_*.py): run the binary, record checks,
and read/write safetensors independently of ckptkit (numpy only).

Environment (set by ctest): CKPTKIT_BIN (the binary), CKPTKIT_DATA (data/), CKPTKIT_SHARED
(../shared; may be absent, tests that need it skip with a message)."""
import json
import os
import struct
import subprocess
import sys

import numpy as np

BIN = os.environ.get("CKPTKIT_BIN", "build/ckptkit")
DATA = os.environ.get("CKPTKIT_DATA", "data")
SHARED = os.environ.get("CKPTKIT_SHARED", "../shared")
SAMPLE = os.path.join(DATA, "bytegpt-base-bf16")
PEFT_PREFIX = "base_model.model."


SKIP_EXIT = 77  # ctest's SKIP_RETURN_CODE (tests/CMakeLists.txt): the script did not run whole
SKIPPED = []


def skip(what):
    """Records a part of the script that did not run (data absent, not possible here): the script
    then exits SKIP_EXIT unless a check failed, so ctest reports it skipped, never passed."""
    print(f"skip: {what}")
    SKIPPED.append(what)


def finish(failures):
    """Ends the script: 1 when a check failed, SKIP_EXIT when a part was skipped, else 0."""
    if failures:
        print(f"{len(failures)} check(s) failed:")
        for f in failures:
            print("  " + f)
        sys.exit(1)
    if SKIPPED:
        print(f"all checks that ran passed; {len(SKIPPED)} part(s) skipped:")
        for s in SKIPPED:
            print("  " + s)
        sys.exit(SKIP_EXIT)
    print("all checks passed")
    sys.exit(0)


def shared_path(*parts):
    """Path under ../shared/data, or None (recorded as skipped) when that data is absent."""
    p = os.path.join(SHARED, "data", *parts)
    if not os.path.exists(p):
        skip(f"{p} not present")
        return None
    return p


class Checks:
    """Prints each check as 'ok'/'FAIL' with its numbers; exit() ends the script accordingly."""

    def __init__(self):
        self.failures = []

    def __call__(self, cond, what):
        print(("ok   " if cond else "FAIL ") + what)
        if not cond:
            self.failures.append(what)
        return bool(cond)

    def exit(self):
        finish(self.failures)


def run(*args, expect=None, quiet=True, **kw):
    """Runs `ckptkit ARGS` (adding -q unless quiet=False); prints output when the exit code
    differs from `expect`."""
    cmd = [BIN, *[str(a) for a in args]] + (["-q"] if quiet else [])
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if expect is not None and p.returncode != expect:
        print("command:", " ".join(cmd))
        print(p.stdout, p.stderr)
    return p


# --- safetensors, independent of ckptkit ----------------------------------------------------------
_NP = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "U8": np.uint8, "I8": np.int8,
       "I16": np.int16, "I32": np.int32, "I64": np.int64, "U16": np.uint16, "U32": np.uint32,
       "BOOL": np.bool_}
_ST = {"float32": "F32", "float64": "F64", "float16": "F16", "uint8": "U8", "int8": "I8",
       "int16": "I16", "int32": "I32", "int64": "I64", "uint16": "U16", "uint32": "U32"}


def read_raw(path):
    """(header without __metadata__, metadata or None, data bytes) of a .safetensors[.zst]."""
    if path.endswith(".zst"):
        raw = subprocess.run(["zstd", "-dc", path], capture_output=True, check=True).stdout
    else:
        with open(path, "rb") as f:
            raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", None)
    return header, meta, raw[8 + n:]


def bf16_to_f32(u16):
    return (u16.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_rne(x):
    """float32 array -> uint16 bf16 bits, round to nearest even (finite inputs)."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def decode(dtype, shape, buf):
    """Raw bytes -> numpy array; BF16 becomes float32 (exact)."""
    if dtype == "BF16":
        a = bf16_to_f32(np.frombuffer(buf, np.uint16))
    else:
        a = np.frombuffer(buf, _NP[dtype])
    return a.reshape(shape)


def read_safetensors(path, raw=False):
    """name -> array (BF16 as float32) and the metadata. raw=True gives name -> (dtype, shape,
    bytes) instead."""
    header, meta, data = read_raw(path)
    out = {}
    for name, e in header.items():
        b, en = e["data_offsets"]
        buf = data[b:en]
        out[name] = (e["dtype"], e["shape"], buf) if raw else decode(e["dtype"], e["shape"], buf)
    return out, meta


OUTPUT_PARTS = ("residual", "quantized", "model")


def checkpoint_dir(d):
    """The checkpoint of a ckptkit output root (its residual/, quantized/ or model/ part, as
    docs/cli.md lays out); `d` itself when it holds weights or is not such a root."""
    if os.path.isfile(d) or any(".safetensors" in f for f in os.listdir(d)):
        return d
    for part in OUTPUT_PARTS:
        p = os.path.join(d, part)
        if os.path.isdir(p) and any(".safetensors" in f for f in os.listdir(p)):
            return p
    return d


def read_checkpoint(d, raw=False):
    """Every weight file of a directory (or one file, or an output root's checkpoint part)
    merged: name -> array (or raw triple)."""
    if os.path.isfile(d):
        return read_safetensors(d, raw)[0]
    d = checkpoint_dir(d)
    out = {}
    for f in sorted(os.listdir(d)):
        if ".safetensors" not in f or f.endswith(".json"):
            continue
        part, _ = read_safetensors(os.path.join(d, f), raw)
        for k in part:
            assert k not in out, f"{k} twice in {d}"
        out.update(part)
    return out


def dtypes_of(d):
    return {k: v[0] for k, v in read_checkpoint(d, raw=True).items()}


def write_safetensors(path, arrays, metadata=None, bf16=()):
    """Writes numpy arrays; names listed in `bf16` are stored as BF16 (RNE from float32)."""
    header, offset, blobs = {}, 0, []
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, a in arrays.items():
        if name in bf16:
            dt, b = "BF16", f32_to_bf16_rne(a).tobytes()
        else:
            a = np.ascontiguousarray(a)
            dt, b = _ST[a.dtype.name], a.tobytes()
        header[name] = {"dtype": dt, "shape": list(np.shape(a)),
                        "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for b in blobs:
            f.write(b)


def same_files(a, b, skip=("report.json",)):
    """Relative paths whose bytes differ between two output trees (or that exist in one only)."""
    def walk(root):
        out = {}
        for dp, _, fs in os.walk(root):
            for f in fs:
                rel = os.path.relpath(os.path.join(dp, f), root)
                if os.path.basename(rel) not in skip:
                    out[rel] = os.path.join(dp, f)
        return out
    fa, fb = walk(a), walk(b)
    diff = sorted(set(fa) ^ set(fb))
    for rel in sorted(set(fa) & set(fb)):
        with open(fa[rel], "rb") as x, open(fb[rel], "rb") as y:
            if x.read() != y.read():
                diff.append(rel)
    return diff


def bf16_ulp(w):
    """One bf16 ulp at each |w| (normal range)."""
    e = np.floor(np.log2(np.maximum(np.abs(w).astype(np.float64), 2.0 ** -126)))
    return 2.0 ** (e - 7)


def rel_fro(a, b):
    """‖a − b‖_F / ‖b‖_F in float64."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def strip_timing(j):
    """report.json without what cannot be identical between runs: argv and timing fields."""
    if isinstance(j, dict):
        return {k: strip_timing(v) for k, v in j.items()
                if k not in ("argv", "timing", "seconds") and not k.endswith("_seconds")
                and not k.startswith("seconds_")
                and "gflops" not in k}
    if isinstance(j, list):
        return [strip_timing(v) for v in j]
    return j


# Independent readers of the quantized layouts (docs/formats-quant.md): bitsandbytes 4-bit
# (NF4/FP4 with its dynamic-map double quantization), bitsandbytes row-wise int8 and ckptkit's own.
# `t` maps tensor names to arrays as stored; each returns (float32 values in the weight's shape,
# the quant_state).

def unpack_msb(packed, bits, n):
    bitarr = np.unpackbits(packed.reshape(-1))[: n * bits].reshape(n, bits)
    weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.uint8)
    return (bitarr * weights).sum(axis=1).astype(np.int64)


def bnb4_dequant(t, base):
    """A bitsandbytes Params4bit weight `base` (nf4 or fp4)."""
    key = next(base + ".quant_state.bitsandbytes__" + k for k in ("nf4", "fp4")
               if base + ".quant_state.bitsandbytes__" + k in t)
    state = json.loads(bytes(t[key]).decode("utf-8"))
    assert key.endswith(state["quant_type"])
    shape, block = state["shape"], state["blocksize"]
    n = int(np.prod(shape))
    packed = t[base].reshape(-1)
    codes = np.empty(2 * packed.size, dtype=np.int64)
    codes[0::2] = packed >> 4      # first element in the high nibble
    codes[1::2] = packed & 0x0F
    codes = codes[:n]
    qmap = t[base + ".quant_map"]
    if "nested_blocksize" in state:
        dyn = t[base + ".nested_quant_map"]
        nested = t[base + ".nested_absmax"]
        q = t[base + ".absmax"].astype(np.int64)
        nb = np.arange(q.size) // state["nested_blocksize"]
        absmax = (dyn[q] * nested[nb]).astype(np.float32) + np.float32(state["nested_offset"])
    else:
        absmax = t[base + ".absmax"]
    vals = (qmap[codes] * absmax[np.arange(n) // block]).astype(np.float32)
    return vals.reshape(shape), state


def ckptkit_dequant(t, base):
    st = json.loads(bytes(t[base + ".quant_state.ckptkit"]).decode("utf-8"))
    shape, block, bits = st["shape"], st["block"], st["bits"]
    n = int(np.prod(shape))
    nb = (n + block - 1) // block
    codes = unpack_msb(t[base], bits, n)
    book = t[base + ".codebook"]
    if st["double_quant"] == "none":
        scale = t[base + ".qscales"]
    elif st["double_quant"] == "lq":
        q = unpack_msb(t[base + ".qscales"], st["lq_scale_bits"], nb).astype(np.float32)
        s1 = t[base + ".qscales_nested"]
        if s1.dtype == np.uint16:  # BF16 read raw
            s1 = (s1.astype(np.uint32) << 16).view(np.float32)
        s1 = s1.astype(np.float32)[np.arange(nb) // st["lq_group"]]
        scale = (q * s1) / np.float32(2 ** st["lq_scale_bits"] - 1) + np.float32(st["offset"])
    else:
        q = t[base + ".qscales"].astype(np.int64)
        scale = (t[base + ".qscales_map"][q] * t[base + ".qscales_nested"][np.arange(nb) // st["nested_block"]]
                 ).astype(np.float32) + np.float32(st["offset"])
    vals = (book[codes] * scale.astype(np.float32)[np.arange(n) // block]).astype(np.float32)
    return vals.reshape(shape), st



def int8_dequant(t, base):
    """A bitsandbytes Int8Params weight (LLM.int8 row-wise): CB * SCB / 127."""
    prefix = base[: -len("weight")] if base.endswith("weight") else base
    cb = t[base].astype(np.float32)
    scb = t[prefix + "SCB"].astype(np.float32)
    return (cb * scb[:, None] * np.float32(1.0 / 127.0)).astype(np.float32), {}


def dequant_any(t, base):
    """Whichever layout `base` is stored in."""
    if any(base + ".quant_state.bitsandbytes__" + k in t for k in ("nf4", "fp4")):
        return bnb4_dequant(t, base)
    if base + ".quant_state.ckptkit" in t:
        return ckptkit_dequant(t, base)
    return int8_dequant(t, base)


# --- PEFT LoRA adapters ----------------------------------------------------------------------------
def lora_scaling(cfg, mod):
    """PEFT's scaling of module `mod`: alpha / r (rsLoRA: / sqrt(r)), rank_pattern and
    alpha_pattern matched as PEFT matches keys (exact or a dotted suffix)."""
    r, alpha = cfg["r"], cfg.get("lora_alpha", cfg.get("alpha"))
    for k, v in cfg.get("rank_pattern", {}).items():
        if mod == k or mod.endswith("." + k):
            r = v
            break
    for k, v in cfg.get("alpha_pattern", {}).items():
        if mod == k or mod.endswith("." + k):
            alpha = v
            break
    return alpha / (np.sqrt(r) if cfg.get("use_rslora") else r)


def read_lora(d):
    """(adapter_config, module -> (A, B) as float64) of a PEFT LoRA adapter directory or output
    root."""
    if os.path.isdir(os.path.join(d, "adapter")):  # an output root (merge --to-lora writes one)
        d = os.path.join(d, "adapter")
    ad, _ = read_safetensors(os.path.join(d, "adapter_model.safetensors"))
    cfg = json.load(open(os.path.join(d, "adapter_config.json")))
    mods = {}
    for k in ad:
        if k.endswith(".lora_A.weight"):
            m = k[len(PEFT_PREFIX):-len(".lora_A.weight")]
            mods[m] = (ad[k].astype(np.float64), ad[PEFT_PREFIX + m + ".lora_B.weight"].astype(np.float64))
    return cfg, mods
