#!/usr/bin/python3
"""Dump the inputs of a model's nn.Linear layers with PyTorch forward hooks, in the format
`ckptkit velora-init` reads: one safetensors file, module name -> [tokens, in_features].

Use it as a library with your own model and calibration batches:

    from dump_activations import dump_linear_inputs
    dump_linear_inputs(model, batches, "acts.safetensors", targets=("v_proj", "down_proj"))
    # then: ckptkit velora-init acts.safetensors -o velora-out --groups 32

or run it as a script for a self-contained demo on a tiny random two-layer transformer block:

    /usr/bin/python3 bench/velora/dump_activations.py --out /tmp/demo-acts.safetensors

Only torch and numpy are needed (the file is written by a small safetensors writer below, so the
`safetensors` package is optional). Module names are the model's own `named_modules()` names, which
are the names PEFT uses in `target_modules` and in its state-dict keys.
"""
import argparse
import json
import struct

import numpy as np
import torch
import torch.nn as nn

_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16"}


def write_safetensors(path, tensors, metadata=None):
    """Minimal writer: {name: numpy array} -> safetensors (little-endian, 8-byte aligned header)."""
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        raw = arr.tobytes()
        header[name] = {"dtype": _DTYPES[arr.dtype], "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


@torch.no_grad()
def dump_linear_inputs(model, batches, path, targets=None, max_tokens=None, dtype=np.float32):
    """Runs `model` on each batch (a tensor, or a dict of keyword arguments) in eval mode and saves the
    input of every nn.Linear whose name ends with one of `targets` (all when None) as [tokens, in]."""
    acts, hooks = {}, []
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Linear):
            continue
        if targets and not any(name == t or name.endswith("." + t) for t in targets):
            continue

        def hook(module, inputs, output, name=name):
            x = inputs[0].detach().reshape(-1, module.in_features).float().cpu().numpy()
            acts.setdefault(name, []).append(x)

        hooks.append(mod.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            model(**batch) if isinstance(batch, dict) else model(batch)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    out = {}
    for name, chunks in acts.items():
        x = np.concatenate(chunks)
        out[name] = (x[:max_tokens] if max_tokens else x).astype(dtype)
    write_safetensors(path, out, {"generator": "bench/velora/dump_activations.py"})
    return {k: v.shape for k, v in out.items()}


class TinyBlock(nn.Module):
    """A pre-LayerNorm transformer block with the module names of OPT / bytegpt."""

    def __init__(self, d=64, ff=256, heads=4):
        super().__init__()
        self.heads = heads
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.self_attn = nn.Module()
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            setattr(self.self_attn, n, nn.Linear(d, d))
        self.final_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, ff)
        self.fc2 = nn.Linear(ff, d)

    def forward(self, x):
        b, t, d = x.shape
        h = self.self_attn_layer_norm(x)
        q, k, v = (getattr(self.self_attn, n)(h).view(b, t, self.heads, -1).transpose(1, 2)
                   for n in ("q_proj", "k_proj", "v_proj"))
        att = torch.softmax(q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5, dim=-1) @ v
        x = x + self.self_attn.out_proj(att.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.final_layer_norm(x))))


class TinyModel(nn.Module):
    def __init__(self, n_layers=2):
        super().__init__()
        self.layers = nn.ModuleList([TinyBlock() for _ in range(n_layers)])

    def forward(self, x):
        for blk in self.layers:
            x = blk(x)
        return x


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="demo-acts.safetensors")
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--seq", type=int, default=32)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = TinyModel()
    batches = [torch.randn(2, args.seq, 64) for _ in range(args.batches)]
    shapes = dump_linear_inputs(model, batches, args.out, targets=("q_proj", "out_proj", "fc1", "fc2"))
    for k, s in shapes.items():
        print("%-28s %s" % (k, list(s)))
    print("wrote", args.out, "- next: ckptkit velora-init", args.out, "-o velora-out --groups 16")


if __name__ == "__main__":
    main()
