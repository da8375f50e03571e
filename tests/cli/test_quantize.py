#!/usr/bin/env python3
"""End-to-end check of `ckptkit quantize`, numpy only.

Reads our bitsandbytes-layout (and ckptkit-layout) output independently of ckptkit, dequantizes it
with the published bitsandbytes rules (NF4 table, high-nibble-first packing, dynamic map, nested
absmax, offset; LLM.int8 row-wise CB*SCB/127) and requires `--dequantize` to give the very same
bytes. Also: lossless archives round-trip bit-exactly on data/ and every ../shared/data file, bad
input exits 2 naming the tensor.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

import cktest

BIN = os.environ.get("CKPTKIT_BIN", "build/ckptkit")
DATA = os.environ.get("CKPTKIT_DATA", "data")
SHARED = os.environ.get("CKPTKIT_SHARED", "../shared")
SAMPLE = os.path.join(DATA, "bytegpt-base-bf16")

# bitsandbytes/functional.py get_4bit_type("nf4"), typed from the published source.
NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
                0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=np.float32)

# get_4bit_type("fp4"): [0, 0.0625, 8, 12, 4, 6, 2, 3, -0, ...] divided by 12 in float32; the
# thresholds of its quantizer, dQuantizeFP4 (csrc/kernels.cu), and each rank's magnitude bits.
FP4 = np.array([0, 0.0625, 8, 12, 4, 6, 2, 3, -0.0, -0.0625, -8, -12, -4, -6, -2, -3],
               dtype=np.float32) / np.float32(12)
FP4_THRESHOLDS = np.array([0.00260417, 0.0859375, 0.20833333, 0.29166667, 0.4166667, 0.583333,
                           0.8333333], dtype=np.float32)
FP4_CODE_OF_RANK = np.array([0b000, 0b001, 0b110, 0b111, 0b100, 0b101, 0b010, 0b011])

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def run(*args, expect=0):
    p = subprocess.run([BIN, *args], capture_output=True, text=True)
    if p.returncode != expect:
        print(p.stdout, p.stderr)
    return p


def load(path):
    """Our own safetensors reader: header dict and a dict name -> numpy array (raw dtype)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    np_types = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "U8": np.uint8, "I8": np.int8,
                "F64": np.float64, "I64": np.int64, "I32": np.int32}
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        out[k] = np.frombuffer(data[b:e], dtype=np_types[v["dtype"]]).reshape(v["shape"])
    return header, out


def bf16_rne(x):
    """float32 -> bf16 bits, round to nearest even (finite inputs)."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def to_dtype(x, dtype):
    if dtype == "BF16":
        return bf16_rne(x)
    if dtype == "F16":
        return x.astype(np.float16)
    return x.astype(np.float32)


def dynamic_map_f64():
    """create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8) in float64."""
    data = []
    for i in range(7):
        b = np.linspace(0.1, 1, 2 ** i + 1)
        means = (b[:-1] + b[1:]) / 2.0
        data += list(10.0 ** (-6 + i) * means) + list(-(10.0 ** (-6 + i)) * means)
    data += [0.0, 1.0]
    return np.sort(np.array(data))


def fp4_codes(x, block):
    """bitsandbytes' FP4 quantizer: x * (1/absmax) per block, sign bit, the magnitude's rank."""
    x = x.reshape(-1)
    codes = np.empty(x.size, dtype=np.int64)
    for b0 in range(0, x.size, block):
        xb = x[b0:b0 + block]
        absmax = np.max(np.abs(xb))
        v = xb * (np.float32(1) / absmax) if absmax > 0 else np.zeros_like(xb)
        rank = (np.abs(v)[:, None] > FP4_THRESHOLDS[None, :]).sum(axis=1)
        codes[b0:b0 + block] = FP4_CODE_OF_RANK[rank] | np.where(v < 0, 8, 0)
    return codes


def compare_dequant(tmp, qdir, label, decoder, suffix):
    deq = os.path.join(tmp, label.replace("/", "_").replace(" ", "_") + "-deq")
    run("quantize", qdir, "--dequantize", "-o", deq, "-q")
    _, q = load(os.path.join(qdir, "quantized", "model.safetensors"))
    dh, d = load(os.path.join(deq, "model", "model.safetensors"))
    _, orig = load(os.path.join(SAMPLE, "model.safetensors"))
    bases = [k[: -len(suffix)] for k in q if k.endswith(suffix)]
    exact = 0
    worst_rel = 0.0
    for b in bases:
        vals, st = decoder(q, b)
        ours = d[b]
        mine = to_dtype(vals, dh[b]["dtype"])
        exact += int(np.array_equal(mine.reshape(-1), ours.reshape(-1)))
        x = (orig[b].astype(np.uint32) << 16).view(np.float32)
        worst_rel = max(worst_rel, float(np.linalg.norm(vals - x) / np.linalg.norm(x)))
    check(len(bases) == 36 and exact == len(bases),
          f"{label}: numpy dequantization equals --dequantize bit for bit on {exact}/{len(bases)} weights")
    same = all(np.array_equal(d[k], orig[k]) for k in orig if k not in bases)
    check(same, f"{label}: non-target tensors pass through unchanged")
    return worst_rel, q, bases


def main():
    tmp = tempfile.mkdtemp(prefix="ckpt-quant-")

    # --- bnb NF4 + double quantization (QLoRA defaults)
    qdir = os.path.join(tmp, "nf4")
    p = run("quantize", SAMPLE, "-o", qdir, "--scheme", "nf4", "--double-quant", "bnb", "-q")
    check(p.returncode == 0, "quantize nf4 --double-quant bnb exits 0")
    rel, q, bases = compare_dequant(tmp, qdir, "nf4+bnbDQ", cktest.bnb4_dequant, ".quant_state.bitsandbytes__nf4")
    print(f"     nf4+bnbDQ worst relative Frobenius error vs the bf16 input: {rel:.4f}")
    check(0.05 < rel < 0.15, f"nf4 error is in the expected range (0.05..0.15): {rel:.4f}")
    b = bases[0]
    check(np.array_equal(q[b + ".quant_map"], NF4), "quant_map is bitsandbytes' NF4 table bit for bit")
    dyn = q[b + ".nested_quant_map"]
    check(np.max(np.abs(dyn.astype(np.float64) - dynamic_map_f64())) < 1e-7,
          "nested_quant_map follows create_dynamic_map (within float32 rounding)")
    st = json.loads(bytes(q[b + ".quant_state.bitsandbytes__nf4"]).decode())
    check(list(st.keys()) == ["quant_type", "blocksize", "dtype", "shape", "nested_blocksize", "nested_dtype",
                              "nested_offset"] and st["dtype"] == "bfloat16" and st["nested_blocksize"] == 256,
          f"quant_state JSON has bnb's keys in as_dict order: {st}")
    n = int(np.prod(st["shape"]))
    check(q[b].shape == (n // 2, 1) and q[b].dtype == np.uint8, f"packed weight is uint8 [n/2, 1]: {q[b].shape}")
    cfg = json.load(open(os.path.join(qdir, "quantized", "config.json")))["quantization_config"]
    check(cfg["quant_method"] == "bitsandbytes" and cfg["load_in_4bit"] and cfg["bnb_4bit_quant_type"] == "nf4"
          and cfg["bnb_4bit_use_double_quant"] and "lm_head" in cfg["llm_int8_skip_modules"],
          "config.json quantization_config is transformers' BitsAndBytesConfig")
    rep = json.load(open(os.path.join(qdir, "report.json")))
    check(sorted(os.listdir(qdir)) == [".ckptkit-output", "quantized", "report.json"]
          and "report.json" not in os.listdir(os.path.join(qdir, "quantized")),
          f"the output root holds quantized/ with report.json beside it: {sorted(os.listdir(qdir))}")
    check(rep["settings"]["bits_per_param_formula"] == 4 + 8 / 64 + 32 / (64 * 256),
          f"bits/param formula 4 + 8/64 + 32/16384 = {rep['settings']['bits_per_param_formula']}")
    row = rep["tensors"][0]
    check(all(k in row for k in ("rel_error", "max_abs_error", "sqnr_db", "bits_per_param")),
          "report rows carry rel_error, max_abs_error, sqnr_db, bits_per_param")

    # --- bnb FP4 with double quantization: codes recomputed here with bnb's tree
    qdir = os.path.join(tmp, "fp4")
    p = run("quantize", SAMPLE, "-o", qdir, "--scheme", "fp4", "-q")
    check(p.returncode == 0, "quantize fp4 exits 0")
    relf, qf, fbases = compare_dequant(tmp, qdir, "fp4+bnbDQ", cktest.bnb4_dequant, ".quant_state.bitsandbytes__fp4")
    print(f"     fp4+bnbDQ worst relative Frobenius error vs the bf16 input: {relf:.4f}")
    check(rel < relf < 0.25, f"fp4 error ({relf:.4f}) is above nf4's ({rel:.4f}) and below 0.25")
    check(np.array_equal(qf[fbases[0] + ".quant_map"].view(np.uint32), FP4.view(np.uint32)),
          "fp4 quant_map is get_4bit_type('fp4') bit for bit")
    _, orig = load(os.path.join(SAMPLE, "model.safetensors"))
    same_codes = 0
    for b in fbases:
        x = (orig[b].astype(np.uint32) << 16).view(np.float32)
        packed = qf[b].reshape(-1)
        ours = np.empty(2 * packed.size, dtype=np.int64)
        ours[0::2], ours[1::2] = packed >> 4, packed & 0x0F
        same_codes += int(np.array_equal(ours[: x.size], fp4_codes(x, 64)))
    check(same_codes == len(fbases) == 36, f"fp4 codes equal a numpy dQuantizeFP4 on {same_codes}/{len(fbases)} weights")
    cfg = json.load(open(os.path.join(qdir, "quantized", "config.json")))["quantization_config"]
    check(cfg["bnb_4bit_quant_type"] == "fp4" and cfg["load_in_4bit"], "config.json says bnb_4bit_quant_type fp4")

    # --- bnb NF4 without double quantization, block 128
    qdir = os.path.join(tmp, "nf4-128")
    run("quantize", SAMPLE, "-o", qdir, "--scheme", "nf4", "--double-quant", "none", "--block", "128", "-q")
    compare_dequant(tmp, qdir, "nf4/128 noDQ", cktest.bnb4_dequant, ".quant_state.bitsandbytes__nf4")

    # --- ckptkit layout: NF3 with LQ-LoRA double quantization (bf16 second-level scales)
    qdir = os.path.join(tmp, "nf3")
    run("quantize", SAMPLE, "-o", qdir, "--scheme", "nf3", "--double-quant", "lq", "--lq-scale-dtype", "bf16", "-q")
    rel3, _, _ = compare_dequant(tmp, qdir, "nf3+lqDQ", cktest.ckptkit_dequant, ".quant_state.ckptkit")
    check(rel3 > rel, f"nf3 error ({rel3:.4f}) is above nf4's ({rel:.4f})")
    qdir = os.path.join(tmp, "int4")
    run("quantize", SAMPLE, "-o", qdir, "--scheme", "int4", "--block", "32", "--double-quant", "bnb", "-q")
    compare_dequant(tmp, qdir, "int4/32+bnbDQ", cktest.ckptkit_dequant, ".quant_state.ckptkit")

    # --- bnb LLM.int8 (row-wise)
    qdir = os.path.join(tmp, "int8")
    run("quantize", SAMPLE, "-o", qdir, "--scheme", "int8", "-q")
    _, q8 = load(os.path.join(qdir, "quantized", "model.safetensors"))
    deq = os.path.join(tmp, "int8-deq")
    run("quantize", qdir, "--dequantize", "-o", deq, "--dtype", "bf16", "-q")
    _, d8 = load(os.path.join(deq, "model", "model.safetensors"))
    ws = [k for k in q8 if k.endswith("weight") and q8[k].dtype == np.int8]
    ok = 0
    for w in ws:
        scb = q8[w[: -len("weight")] + "SCB"]
        vals = (q8[w].astype(np.float32) * scb[:, None]).astype(np.float32) * np.float32(7.874015718698502e-3)
        ok += int(np.array_equal(bf16_rne(vals), d8[w]))
    check(len(ws) == 36 and ok == len(ws), f"int8 row-wise: numpy CB*SCB/127 equals --dequantize on {ok}/{len(ws)}")

    # --- bad input
    p = run("quantize", SAMPLE, "-o", os.path.join(tmp, "bad1"), "--block", "48", expect=2)
    check(p.returncode == 2 and "power of two" in p.stderr, f"--block 48 exits 2: {p.stderr.strip()}")
    p = run("quantize", os.path.join(tmp, "nf4"), "-o", os.path.join(tmp, "bad2"), expect=2)
    check(p.returncode == 2 and "already quantized" in p.stderr, f"re-quantizing exits 2: {p.stderr.strip()}")
    p = run("convert", os.path.join(tmp, "nf4"), "-o", os.path.join(tmp, "bad4"), "--dtype", "f16", expect=2)
    check(p.returncode == 2 and "quantize --dequantize" in p.stderr and ".weight" in p.stderr
          and not os.path.exists(os.path.join(tmp, "bad4")),
          f"convert --dtype of a quantized checkpoint (would cast its absmax) exits 2: {p.stderr.strip()}")
    nan_dir = os.path.join(tmp, "nan")
    os.makedirs(nan_dir)
    w = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    w[3, 5] = np.nan
    hdr = json.dumps({"layer.q_proj.weight": {"dtype": "F32", "shape": [64, 64], "data_offsets": [0, w.nbytes]}}).encode()
    with open(os.path.join(nan_dir, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hdr)) + hdr + w.tobytes())
    p = run("quantize", nan_dir, "-o", os.path.join(tmp, "bad3"), expect=2)
    check(p.returncode == 2 and "layer.q_proj.weight" in p.stderr and "NaN" in p.stderr,
          f"NaN input exits 2 naming the tensor: {p.stderr.strip()}")

    # --- lossless archives: bit-exact on data/ and every ../shared/data file
    inputs = [os.path.join(SAMPLE, "model.safetensors")]
    shared = os.path.join(SHARED, "data")
    if os.path.isdir(shared):
        for root, _, files in sorted(os.walk(shared)):
            inputs += [os.path.join(root, f) for f in sorted(files) if f.endswith(".safetensors")]
    else:
        cktest.skip("../shared/data: absent")
    for i, src in enumerate(inputs):
        arc, back = os.path.join(tmp, f"ll{i}"), os.path.join(tmp, f"ll{i}-back")
        p = run("quantize", src, "-o", arc, "--scheme", "lossless", "--json")
        ratio = json.loads(p.stdout)["totals"]["ratio"] if p.returncode == 0 else 0
        run("quantize", arc, "--dequantize", "-o", back, "-q")
        h0, t0 = load(src)
        h1, t1 = load(os.path.join(back, "model", "model.safetensors"))
        same = set(t0) == set(t1) and all(t0[k].tobytes() == t1[k].tobytes() and h0[k]["dtype"] == h1[k]["dtype"]
                                          for k in t0) and h0.get("__metadata__") == h1.get("__metadata__")
        check(same, f"lossless round trip bit-exact: {src} (ratio {ratio})")
        p = run("inspect", arc)
        check(p.returncode == 0, f"inspect reads the archive directly: {arc}")
    shutil_rm(tmp)
    cktest.finish(failures)


def shutil_rm(path):
    import shutil
    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
