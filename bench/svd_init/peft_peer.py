#!/usr/bin/env python3
"""PyTorch peer for `ckptkit svd-init`: what PEFT's pissa_init does, without PEFT's model plumbing.

Loads every tensor of a safetensors checkpoint into memory (as transformers' from_pretrained
does), then for every linear weight (2-D, name ends in .weight, not embed/lm_head):
  W = weight.float(); randomized: U, S, V = torch.svd_lowrank(W, q=r, niter=N) (PEFT's
  "pissa_niter_N"); exact: V, S, Uh = torch.linalg.svd(W, full_matrices=False) (PEFT's "pissa");
  S_r /= s; A = diag(sqrt S_r) Uh_r; B = V_r diag(sqrt S_r); W_res = W - s*B@A cast back in place.
Writes OUT/residual/model.safetensors (+ config.json) and OUT/adapter/adapter_model.safetensors +
adapter_config.json. (huggingface/peft src/peft/tuners/lora/layer.py pissa_init.)

usage: peft_peer.py CKPT_DIR OUT --rank R [--svd randomized|exact] [--niter 4] [--threads T]
"""
import argparse
import json
import os
import shutil
import sys
import struct
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from torch_st import load, save  # noqa: E402





def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("out")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--svd", default="randomized", choices=["randomized", "exact"])
    ap.add_argument("--niter", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.time()
    w, meta = load(os.path.join(a.ckpt, "model.safetensors"))
    r, scale = a.rank, 1.0  # lora_alpha = r
    adapter = {}
    for name, t in w.items():
        if t.dim() != 2 or not name.endswith(".weight") or "embed" in name or "lm_head" in name:
            continue
        W = t.to(torch.float32)
        if a.svd == "randomized":
            U, S, V = torch.svd_lowrank(W, q=r, niter=a.niter)
            Vr, Sr, Uhr = U, S, V.t()
        else:
            V_, S, Uh = torch.linalg.svd(W, full_matrices=False)
            Vr, Sr, Uhr = V_[:, :r], S[:r], Uh[:r]
        Sr = Sr / scale
        A = torch.diag(torch.sqrt(Sr)) @ Uhr
        B = Vr @ torch.diag(torch.sqrt(Sr))
        w[name] = (W - scale * B @ A).to(t.dtype)
        mod = name[: -len(".weight")]
        adapter[f"base_model.model.{mod}.lora_A.weight"] = A.contiguous()
        adapter[f"base_model.model.{mod}.lora_B.weight"] = B.contiguous()
    os.makedirs(os.path.join(a.out, "residual"), exist_ok=True)
    os.makedirs(os.path.join(a.out, "adapter"), exist_ok=True)
    save(os.path.join(a.out, "residual", "model.safetensors"), w, meta)
    if os.path.exists(os.path.join(a.ckpt, "config.json")):
        shutil.copy(os.path.join(a.ckpt, "config.json"), os.path.join(a.out, "residual"))
    save(os.path.join(a.out, "adapter", "adapter_model.safetensors"), adapter, {"format": "pt"})
    leaves = sorted({k.split(".")[-3] for k in adapter})
    cfg = {"peft_type": "LORA", "r": r, "lora_alpha": r, "target_modules": leaves, "init_lora_weights": True,
           "use_rslora": False, "fan_in_fan_out": False, "task_type": "CAUSAL_LM", "lora_dropout": 0.0,
           "bias": "none", "base_model_name_or_path": os.path.join(a.out, "residual")}
    json.dump(cfg, open(os.path.join(a.out, "adapter", "adapter_config.json"), "w"), indent=2, sort_keys=True)
    print(f"peer: {len(adapter) // 2} layers in {time.time() - t0:.2f}s")


if __name__ == "__main__":
    main()
