#!/usr/bin/env python3
"""PyTorch peer for `ckptkit merge`: what PEFT's merge_and_unload does for LoRA, without PEFT's model
plumbing. Loads every tensor of the base checkpoint into memory (as transformers' from_pretrained
does), reads the adapter, and for every module W += s * (B @ A) (computed in fp32 and cast back to
W's dtype, as PEFT's get_delta_weight does on CPU; transposed for fan_in_fan_out / embeddings),
then saves model.safetensors (+ config.json).

usage: torch_peer.py BASE_DIR ADAPTER_DIR OUT [--threads T]
"""
import argparse
import json
import math
import os
import re
import shutil
import sys
import struct

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from torch_st import load, save  # noqa: E402

PREFIX = "base_model.model."




def pattern(d, mod, default):
    for k, v in d.items():
        if re.match(rf"(.*\.)?({k})$", mod):
            return v
    return default


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("adapter")
    ap.add_argument("out")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    w, meta = load(os.path.join(a.base, "model.safetensors"))
    ad, _ = load(os.path.join(a.adapter, "adapter_model.safetensors"))
    cfg = json.load(open(os.path.join(a.adapter, "adapter_config.json")))
    fifo = cfg.get("fan_in_fan_out", False)
    with torch.no_grad():
        for key in ad:
            emb = key.endswith(".lora_embedding_A")
            if not (key.endswith(".lora_A.weight") or emb):
                continue
            mod = key[len(PREFIX):].rsplit(".lora_", 1)[0]
            A = ad[key].float()
            B = ad[key.replace("lora_A.weight", "lora_B.weight").replace("lora_embedding_A", "lora_embedding_B")].float()
            r = pattern(cfg.get("rank_pattern") or {}, mod, cfg["r"])
            alpha = pattern(cfg.get("alpha_pattern") or {}, mod, cfg["lora_alpha"])
            s = alpha / (math.sqrt(r) if cfg.get("use_rslora") else r)
            W = w[mod + ".weight"]
            delta = (B @ A) * s
            if fifo or emb:
                delta = delta.T
            W += delta.to(W.dtype)
    os.makedirs(a.out, exist_ok=True)
    save(os.path.join(a.out, "model.safetensors"), w, meta)
    for f in os.listdir(a.base):
        if f.endswith(".json") and "safetensors" not in f:
            shutil.copy(os.path.join(a.base, f), os.path.join(a.out, f))


if __name__ == "__main__":
    main()
