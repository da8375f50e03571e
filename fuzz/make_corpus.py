#!/usr/bin/python3
"""Writes seed corpora for the fuzz targets, derived from the bundled sample in data/.

usage: fuzz/make_corpus.py OUTDIR [CKPTKIT_BIN]
  -> OUTDIR/{safetensors,index,adapter_config,activations,torch_bin,regex,lossless,mpo_adapter,
             quant_state,part_manifest}/*

Seeds are small: the sample's real header (names, dtypes, __metadata__) with every tensor shrunk
so a whole file fits in a few KB, plus its original header alone, and index files built from its
real tensor names; PEFT-style adapter configs; activation dumps as velora-init reads them. With the
ckptkit binary (argument or $CKPTKIT_BIN) the formats only ckptkit writes are seeded from its own
output on a small Llama-shaped checkpoint: lossless archives and their blobs, MPO adapters, and
quantized checkpoints in every layout (bnb nf4, bnb row-wise int8, ckptkit int4 and nf3 + lq
double quant).
"""
import random
import shutil
import subprocess
import tempfile
import json
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "data", "bytegpt-base-bf16", "model.safetensors")
ITEM = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)), n


def safetensors(entries, metadata=None, pad=True):
    """entries: list of (name, dtype, shape); builds a valid file with deterministic data."""
    header, offset = {}, 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape in entries:
        nbytes = ITEM[dtype]
        for d in shape:
            nbytes *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-(8 + len(text)) % 8)
    return struct.pack("<Q", len(text)) + text + bytes((i * 7 + 1) & 0xFF for i in range(offset))


def torch_bin_seeds():
    """The PyTorch fixtures of data/torch-bin (torch.save output, the legacy format, a crafted
    pickle) as they are."""
    d = os.path.join(ROOT, "data", "torch-bin")
    out = {}
    for dp, _, fs in os.walk(d):
        for f in sorted(fs):
            if f.endswith(".bin"):
                with open(os.path.join(dp, f), "rb") as fh:
                    out[os.path.relpath(os.path.join(dp, f), d).replace("/", "_")] = fh.read()
    return out


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "fuzz-corpus"
    st_dir, ix_dir = os.path.join(out, "safetensors"), os.path.join(out, "index")
    os.makedirs(st_dir, exist_ok=True)
    os.makedirs(ix_dir, exist_ok=True)
    header, n = read_header(SAMPLE)
    meta = header.pop("__metadata__", None)
    names = list(header)
    seeds = {}
    # The real names and dtypes, shapes shrunk: first 8, 24 and all tensors.
    for count in (8, 24, len(names)):
        entries = [(k, header[k]["dtype"], [min(d, 2) for d in header[k]["shape"]]) for k in names[:count]]
        seeds[f"sample_shrunk_{count}"] = safetensors(entries, meta)
    seeds["sample_no_metadata"] = safetensors([(k, header[k]["dtype"], [1]) for k in names[:4]])
    seeds["mixed_dtypes"] = safetensors([("a", "F32", [2, 2]), ("b", "F16", [3]), ("c", "I64", [1]),
                                         ("d", "BOOL", [5]), ("e", "F64", []), ("z", "U8", [0])],
                                        {"format": "pt"}, pad=False)
    seeds["empty_object"] = safetensors([], None)
    # The real header alone (data section missing): exercises the offset checks.
    with open(SAMPLE, "rb") as f:
        seeds["sample_header_only"] = f.read(8 + n)
    for k, v in seeds.items():
        with open(os.path.join(st_dir, k), "wb") as f:
            f.write(v)
    # Index seeds from the real names, as transformers writes them.
    half = len(names) // 2
    wm = {k: "model-0000%d-of-00002.safetensors" % (1 if i < half else 2) for i, k in enumerate(names)}
    index = {"metadata": {"total_size": 21786624}, "weight_map": dict(sorted(wm.items()))}
    ix_seeds = {
        "sample_index": json.dumps(index, indent=2),
        "small_index": json.dumps({"weight_map": {"a.weight": "m-1.safetensors", "b": "m-2.safetensors"}}),
        "bad_value": json.dumps({"weight_map": {"a": 1}}),
        "no_map": json.dumps({"metadata": {}}),
    }
    for k, v in ix_seeds.items():
        with open(os.path.join(ix_dir, k), "w") as f:
            f.write(v)
    print(f"wrote {len(seeds)} safetensors seeds to {st_dir}, {len(ix_seeds)} index seeds to {ix_dir}")
    counts = {
        "adapter_config": write_seeds(out, "adapter_config", adapter_config_seeds()),
        "activations": write_seeds(out, "activations", activation_seeds()),
        "torch_bin": write_seeds(out, "torch_bin", torch_bin_seeds()),
        "regex": write_seeds(out, "regex", regex_seeds(names)),
    }
    binary = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("CKPTKIT_BIN")
    if binary and os.path.exists(binary):
        for k, v in ckptkit_seeds(binary).items():
            counts[k] = write_seeds(out, k, v)
    else:
        print("no ckptkit binary given: lossless, mpo_adapter and quant_state seeds skipped")
    print("wrote " + ", ".join(f"{n} {k}" for k, n in counts.items()) + " seeds")


def write_seeds(out, kind, seeds):
    d = os.path.join(out, kind)
    os.makedirs(d, exist_ok=True)
    for k, v in seeds.items():
        with open(os.path.join(d, k), "wb") as f:
            f.write(v if isinstance(v, bytes) else v.encode())
    return len(seeds)


def adapter_config_seeds():
    """adapter_config.json as PEFT writes it (LoRA, PiSSA-style, rsLoRA, patterns, GPT-2)."""
    base = {"alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": "meta-llama/Llama-2-7b-hf",
            "bias": "none", "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True,
            "layers_pattern": None, "layers_to_transform": None, "lora_alpha": 16, "lora_dropout": 0.0,
            "modules_to_save": None, "peft_type": "LORA", "r": 16, "rank_pattern": {}, "revision": None,
            "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM", "use_dora": False,
            "use_rslora": False}
    seeds = {"peft_llama": json.dumps(base, indent=2)}
    seeds["patterns"] = json.dumps(dict(base, rank_pattern={"q_proj": 8, "layers\\.0\\..*": 4},
                                        alpha_pattern={"v_proj": 32.5}, use_rslora=True))
    seeds["gpt2"] = json.dumps(dict(base, fan_in_fan_out=True, target_modules="c_attn", r=4, lora_alpha=8))
    seeds["minimal"] = json.dumps({"peft_type": "LORA"})
    seeds["not_lora"] = json.dumps({"peft_type": "IA3", "r": 8})
    seeds["dora"] = json.dumps(dict(base, use_dora=True))
    return seeds


def activation_seeds():
    """Activation dumps ([tokens, D] per module, f32/bf16/f16); the first byte is the fuzz target's
    control byte (--groups, --init)."""
    rng = random.Random(0)

    def dump(mods, dtype="F32"):
        header, offset, blobs = {}, 0, []
        for name, (t, d) in mods.items():
            n = t * d * ITEM[dtype]
            header[name] = {"dtype": dtype, "shape": [t, d], "data_offsets": [offset, offset + n]}
            if dtype == "F32":
                b = struct.pack("<%df" % (t * d), *[rng.gauss(0, 1) for _ in range(t * d)])
            else:  # BF16/F16 bit patterns of small normal-ish numbers
                b = bytes(rng.choice([0x3F, 0xBF, 0x3E, 0xBE]) if i % 2 else rng.randrange(256) for i in range(n))
            blobs.append(b)
            offset += n
        text = json.dumps(header).encode()
        text += b" " * (-(8 + len(text)) % 8)
        return struct.pack("<Q", len(text)) + text + b"".join(blobs)

    return {
        "two_modules_m2": bytes([2]) + dump({"model.layers.0.mlp.down_proj": (8, 16),
                                             "model.layers.0.self_attn.q_proj": (8, 8)}),
        "bf16_top_singular": bytes([0x83]) + dump({"h.0.attn.c_attn": (4, 12)}, "BF16"),
        "f16_m1": bytes([0]) + dump({"fc1": (3, 5)}, "F16"),
    }


def regex_seeds(names):
    """--target / --exclude patterns and PEFT pattern keys, NUL, a module name of the sample."""
    patterns = [r".*\.(q_proj|v_proj)", r"model\.layers\.\d+\.mlp\..*", r"(.*)*(.*)*Z",
                r"^(?!lm_head).*$", r"[a-z]+\.[0-9]{1,3}\.attn", r".*layers\.(0|1|2)\..*_proj",
                r"\bq_proj\b", r"(a|aa)+b", r"x{2,1000}"]
    mods = [n.rsplit(".", 1)[0] for n in names[:12]]
    return {f"re_{i}_{j}": p.encode() + b"\0" + m.encode()
            for i, p in enumerate(patterns) for j, m in enumerate(mods[:3])}


def ckptkit_seeds(binary):
    """Seeds from ckptkit's own outputs on a small Llama-shaped checkpoint."""
    tmp = tempfile.mkdtemp(prefix="ckptkit-corpus-")
    try:
        rng = random.Random(1)
        src = os.path.join(tmp, "in")
        os.makedirs(src)
        mods = {"model.layers.0.self_attn.q_proj.weight": [16, 16], "model.layers.0.mlp.up_proj.weight": [32, 16],
                "model.layers.0.mlp.down_proj.weight": [16, 32], "model.norm.weight": [16]}
        header, offset, blobs = {}, 0, []
        for name, shape in mods.items():
            n = 1
            for d in shape:
                n *= d
            header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + 4 * n]}
            blobs.append(struct.pack("<%df" % n, *[rng.gauss(0, 0.02) for _ in range(n)]))
            offset += 4 * n
        text = json.dumps(header).encode()
        text += b" " * (-(8 + len(text)) % 8)
        with open(os.path.join(src, "model.safetensors"), "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
        with open(os.path.join(src, "config.json"), "w") as f:
            json.dump({"model_type": "llama", "hidden_size": 16}, f)

        def ck(*args):
            subprocess.run([binary, *args, "-q"], check=True, capture_output=True)

        def read(*parts):
            with open(os.path.join(tmp, *parts), "rb") as f:
                return f.read()

        out = {"lossless": {}, "mpo_adapter": {}, "quant_state": {}, "part_manifest": {}}
        # Part manifests as --shard K/N runs write them (stitch reads these first).
        for cmd, extra in (("svd-init", ["--rank", "2"]), ("quantize", ["--scheme", "nf4"])):
            for k in range(2):
                part = os.path.join(tmp, f"{cmd}-part{k}")
                ck(cmd, src, "-o", part, "--shard", f"{k}/2", *extra)
                out["part_manifest"][f"{cmd}_{k}"] = read(part, "ckptkit-part.json")
        # Lossless archive: the whole shard (control byte 0) and each blob (control byte 1).
        ck("quantize", src, "-o", os.path.join(tmp, "zip"), "--scheme", "lossless")
        shard = read("zip", "model.ckptkit-lossless.safetensors")
        out["lossless"]["archive"] = bytes([0]) + shard
        n = struct.unpack("<Q", shard[:8])[0]
        hdr = json.loads(shard[8:8 + n])
        marker = json.loads(hdr["__metadata__"]["ckptkit.lossless"])
        for name, e in hdr.items():
            if name == "__metadata__":
                continue
            b, en = e["data_offsets"]
            info = marker["tensors"][name]
            size = ITEM[info["dtype"]]
            for d in info["shape"]:
                size *= d
            # dtype byte: the target's table is BF16, F32, F16, F64, U8.
            code = ["BF16", "F32", "F16", "F64", "U8"].index(info["dtype"])
            out["lossless"]["blob_" + name] = bytes([1, code]) + struct.pack("<I", size) + shard[8 + n + b:8 + n + en]
        out["lossless"]["round_trip_bf16"] = bytes([2, 0]) + bytes(rng.randrange(256) for _ in range(256))
        out["lossless"]["round_trip_f32"] = bytes([2, 1]) + shard[8 + n:8 + n + 512]
        # MPO adapter: adapter_config.json, 0xFF, adapter_model.safetensors.
        ck("mpo-init", src, "-o", os.path.join(tmp, "mpo"), "--cores", "3")
        mpo = [d for d in os.listdir(os.path.join(tmp, "mpo")) if os.path.isdir(os.path.join(tmp, "mpo", d))]
        for sub in [""] + mpo:
            p = os.path.join(tmp, "mpo", sub)
            if os.path.exists(os.path.join(p, "adapter_config.json")):
                out["mpo_adapter"]["mpo_" + (sub or "root")] = (
                    read("mpo", sub, "adapter_config.json") + b"\xff" + read("mpo", sub, "adapter_model.safetensors"))
        # Quantized checkpoints in every layout.
        for tag, args in {"bnb_nf4": ["--scheme", "nf4", "--double-quant", "bnb"],
                          "bnb_int8": ["--scheme", "int8"],
                          "ckptkit_int4": ["--scheme", "int4", "--block", "32"],
                          "ckptkit_nf3_lq": ["--scheme", "nf3", "--double-quant", "lq"]}.items():
            try:
                ck("quantize", src, "-o", os.path.join(tmp, tag), *args)
            except subprocess.CalledProcessError as e:
                print(f"quant_state seed {tag} skipped: {e.stderr.decode().strip()}")
                continue
            out["quant_state"][tag] = read(tag, "model.safetensors")
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
