#!/usr/bin/python3
"""Writes seed corpora for the fuzz targets, derived from the bundled sample in data/.

usage: fuzz/make_corpus.py OUTDIR   -> OUTDIR/safetensors/*, OUTDIR/index/*

Seeds are small: the sample's real header (names, dtypes, __metadata__) with every tensor shrunk
so a whole file fits in a few KB, plus its original header alone, and index files built from its
real tensor names.
"""
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


if __name__ == "__main__":
    main()
