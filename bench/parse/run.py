#!/usr/bin/python3
"""Header and index parse time (issue #21): writes a safetensors file with 10⁶ one-byte tensors
(a 76 MB header) and a 10-shard checkpoint whose index has 10⁵ entries, then runs
build/bench/ckptkit-header-parse on each (best of 3, peak RSS).

    python3 bench/parse/run.py [WORKDIR]"""
import json
import os
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, "build", "bench", "ckptkit-header-parse")


def safetensors(path, names):
    parts = [f'"{n}":{{"dtype":"U8","shape":[1],"data_offsets":[{i},{i + 1}]}}'
             for i, n in enumerate(names)]
    text = ('{"__metadata__":{"format":"pt"},' + ",".join(parts) + "}").encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"\0" * len(names))


def main():
    work = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()
    big = os.path.join(work, "h1m.safetensors")
    safetensors(big, [f"model.layers.{i // 16}.mlp.experts.{i % 16}.w" for i in range(1_000_000)])
    idx = os.path.join(work, "idx")
    os.makedirs(idx, exist_ok=True)
    weight_map = {}
    for s in range(10):
        name = f"model-{s + 1:05d}-of-00010.safetensors"
        names = [f"t.{i}.weight" for i in range(s * 10_000, (s + 1) * 10_000)]
        safetensors(os.path.join(idx, name), names)
        weight_map.update({n: name for n in names})
    with open(os.path.join(idx, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f, indent=2)
    for path in (big, idx):
        print(subprocess.run([TOOL, path, "3"], capture_output=True, text=True, check=True).stdout,
              end="")


if __name__ == "__main__":
    main()
