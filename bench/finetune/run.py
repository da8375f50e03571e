#!/usr/bin/env python3
"""Do ckptkit's adapter initialisations train as their papers claim? Loss curves on CPU.

bytegpt-base (../shared/data/bytegpt-base, a byte-level GPT trained on Python docs) is fine-tuned
on the corpus its own fine-tune saw (Debian's `fortunes` text, train_pair.py's FT_FILES, 95/5
split), with the adapter frozen-base setups ckptkit writes, loaded the way PEFT loads them:

  lora    PEFT's LoRA with init_lora_weights="gaussian": A ~ N(0, 1/r), B = 0, on W
  pissa   `ckptkit svd-init --rank r`: A, B from the adapter, frozen residual W - s*B*A
  milora  `ckptkit svd-init --method milora --svd exact`: the r smallest triplets
  dota    `ckptkit mpo-init --params-like-lora r`: every MPO core trains, frozen W - MPO
  qpissa  `ckptkit svd-init --quantize-residual nf4`: frozen NF4(W_res), dequantized
  qlora   `ckptkit quantize --scheme nf4`: frozen NF4(W), Gaussian A, zero B

Every method adapts the same 36 linear weights (q/k/v/out_proj, fc1, fc2 of the 6 layers) with
the same trainable parameter count (DoTA: at most that count, --params-like-lora r) and lora_alpha
= r (scaling 1, PiSSA's setting, for every LoRA-family method). The LoRA layer is written from
PEFT's source (tuners/lora/layer.py Linear.forward: result = base(x) + lora_B(lora_A(dropout(x)))
* scaling, scaling = lora_alpha / r or / sqrt(r) with use_rslora, rank_pattern / alpha_pattern by
key suffix, fan_in_fan_out transposing a Conv1D weight); the model is train_pair.py's ByteGPT,
imported from ../shared. Same data order per seed for every method, AdamW, fixed steps.

Writes OUT/results.json (per method and seed: train loss every step, validation loss every
--eval-every steps, trainable parameters, seconds) and prints a Markdown table; plot.py draws the
SVG. Needs /usr/bin/python3 with Debian's python3-torch and python3-numpy, Debian's `fortunes`
package (apt-get install fortunes), and a ckptkit build.

usage: run.py --ckptkit build/ckptkit [--shared ../shared/data] [--out /tmp/ckptkit-finetune]
              [--methods lora,pissa,...] [--seeds 0,1,2] [--steps 100] [--batch 8] [--seq 64]
              [--rank 8] [--lr 5e-4] [--eval-every 20] [--eval-batches 4]
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "cli"))
import cktest  # noqa: E402  (safetensors and PEFT adapter reading, independent of ckptkit)

TARGETS = "q_proj,k_proj,v_proj,out_proj,fc1,fc2"
METHODS = ["lora", "pissa", "milora", "dota", "qpissa", "qlora"]


# ------------------------------------------------------------------ PEFT-equivalent layers
class LoraLinear(nn.Module):
    """PEFT's lora.Linear for one adapter: the base layer frozen, lora_A [r, in] and lora_B
    [out, r] trainable, dropout 0. `fan_in_fan_out`: the base weight is stored [in, out] (Conv1D)."""

    def __init__(self, base, A, B, scaling, fan_in_fan_out=False):
        super().__init__()
        self.base = base
        self.fan_in_fan_out = fan_in_fan_out
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.tensor(np.array(A, dtype=np.float32)))
        self.lora_B = nn.Parameter(torch.tensor(np.array(B, dtype=np.float32)))
        self.scaling = float(scaling)

    def forward(self, x):
        w = self.base.weight.t() if self.fan_in_fan_out else self.base.weight
        result = F.linear(x, w, self.base.bias)
        return result + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scaling


class MpoLinear(nn.Module):
    """ckptkit's MPO adapter (docs/mpo-init.md): y = base(x) + x @ contract(cores).T."""

    def __init__(self, base, cores, out_f, in_f):
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.cores = nn.ParameterList([nn.Parameter(torch.tensor(np.array(c, dtype=np.float32)))
                                       for c in cores])
        self.out_f, self.in_f = out_f, in_f

    def delta(self):
        acc = self.cores[0]
        for c in self.cores[1:]:
            acc = torch.tensordot(acc, c, dims=([acc.dim() - 1], [0]))
        acc = acc.reshape(acc.shape[1:-1])
        n = len(self.cores)
        return acc.permute(list(range(0, 2 * n, 2)) + list(range(1, 2 * n, 2))).reshape(self.out_f, self.in_f)

    def forward(self, x):
        return self.base(x) + F.linear(x, self.delta())


# ------------------------------------------------------------------ setups
def run_ckptkit(ckptkit, *args):
    p = subprocess.run([ckptkit, *[str(a) for a in args], "-q"], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"ckptkit {' '.join(map(str, args))} failed:\n{p.stderr}")


def prepare(ckptkit, base, work, rank):
    """The ckptkit outputs every method starts from (made once)."""
    os.makedirs(work, exist_ok=True)
    t = ["--target", TARGETS]
    made = {
        "pissa": ["svd-init", base, "--rank", rank, *t],
        "milora": ["svd-init", base, "--rank", rank, "--method", "milora", "--svd", "exact", *t],
        "dota": ["mpo-init", base, "--params-like-lora", rank, *t],
        "qpissa": ["svd-init", base, "--rank", rank, "--quantize-residual", "nf4", *t],
        "nf4": ["quantize", base, "--scheme", "nf4", *t],
    }
    for name, args in made.items():
        out = os.path.join(work, name)
        if not os.path.exists(out):
            run_ckptkit(ckptkit, *args, "-o", out)
    for name in ("qpissa", "nf4"):  # frozen quantized weights, as bitsandbytes dequantizes them
        out = os.path.join(work, name + "-deq")
        if not os.path.exists(out):
            run_ckptkit(ckptkit, "quantize", os.path.join(work, name), "--dequantize", "--dtype", "f32",
                        "-o", out)


def frozen_weights(method, base, work):
    """name -> float32 array of the frozen model each method trains on."""
    src = {"lora": base, "pissa": os.path.join(work, "pissa", "residual"),
           "milora": os.path.join(work, "milora", "residual"), "dota": os.path.join(work, "dota", "residual"),
           "qpissa": os.path.join(work, "qpissa-deq"), "qlora": os.path.join(work, "nf4-deq")}[method]
    return {k: v.astype(np.float32) for k, v in cktest.read_checkpoint(src).items()}


def mpo_cores(work):
    d = os.path.join(work, "dota", "adapter")
    cfg = json.load(open(os.path.join(d, "adapter_config.json")))
    t, _ = cktest.read_safetensors(os.path.join(d, "adapter_model.safetensors"))
    out = {}
    for module, m in cfg["modules"].items():
        n = len(m["bonds"]) - 1
        out[module] = ([t[f"base_model.model.{module}.mpo_core.{k}"] for k in range(n)], m["shape"])
    return out


def build(method, tp, weights, work, rank, seed):
    """ByteGPT with `weights` loaded and the method's adapters in place; returns (model, trainable)."""
    torch.manual_seed(seed)
    model = tp.ByteGPT(tp.CFG)
    sd = {k: torch.from_numpy(v.copy()) for k, v in weights.items()}
    model.load_state_dict(sd, strict=True)
    for p in model.parameters():
        p.requires_grad_(False)
    adapters = None
    if method in ("pissa", "milora", "qpissa"):
        cfg, mods = cktest.read_lora(os.path.join(work, method))
        adapters = {m: (A, B, cktest.lora_scaling(cfg, m), cfg.get("fan_in_fan_out", False))
                    for m, (A, B) in mods.items()}
    cores = mpo_cores(work) if method == "dota" else None
    g = torch.Generator().manual_seed(10_000 + seed)
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if not isinstance(child, nn.Linear) or child_name not in TARGETS.split(","):
                continue
            if method in ("lora", "qlora"):  # PEFT init_lora_weights="gaussian", alpha = r
                A = torch.randn(rank, child.in_features, generator=g) / rank
                B = torch.zeros(child.out_features, rank)
                layer = LoraLinear(child, A, B, 1.0)
            elif method == "dota":
                cs, shape = cores[full]
                layer = MpoLinear(child, cs, shape[0], shape[1])
            else:
                A, B, s, fifo = adapters[full]
                layer = LoraLinear(child, A, B, s, fifo)
            setattr(module, child_name, layer)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return model, trainable


# ------------------------------------------------------------------ training
def run_one(method, seed, tp, weights, work, data, a):
    model, trainable = build(method, tp, weights, work, a.rank, seed)
    train, val = data
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.95), weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)  # the same batches for every method
    losses, evals = [], []
    t0 = time.time()
    for step in range(a.steps + 1):
        if step % a.eval_every == 0 or step == a.steps:
            evals.append((step, tp.evaluate(model, val, B=16, T=128, n=a.eval_batches, seed=999)))
        if step == a.steps:
            break
        for pg in opt.param_groups:
            pg["lr"] = a.lr * min(1.0, (step + 1) / a.warmup)
        x, y = tp.batch(train, a.batch, a.seq, g)
        loss = F.cross_entropy(model(x).reshape(-1, 256), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
    return {"method": method, "seed": seed, "trainable": trainable, "train_loss": losses,
            "val_loss": evals, "seconds": round(time.time() - t0, 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckptkit", required=True)
    ap.add_argument("--shared", default=os.path.join("..", "shared", "data"))
    ap.add_argument("--out", default="/tmp/ckptkit-finetune")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--eval-every", type=int, default=20)
    ap.add_argument("--eval-batches", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    base = os.path.join(a.shared, "bytegpt-base")
    if not os.path.isdir("/usr/share/games/fortunes"):
        sys.exit("needs Debian's fortunes package (the fine-tuning text): apt-get install fortunes")
    torch.set_num_threads(a.threads)
    sys.path.insert(0, base)
    import train_pair as tp  # ByteGPT, CFG, corpus loading, batch, evaluate (../shared)

    work = os.path.join(a.out, "inputs")
    prepare(a.ckptkit, base, work, a.rank)
    ftr, fva, sha, n = tp.load_corpus([tp.FT_FMT.format(f) for f in tp.FT_FILES])
    print(f"fine-tuning text: {n} bytes, sha256 {sha[:16]}", flush=True)
    results_path = os.path.join(a.out, "results.json")
    results = json.load(open(results_path)) if os.path.exists(results_path) else []
    done = {(r["method"], r["seed"]) for r in results}
    for method in a.methods.split(","):
        weights = frozen_weights(method, base, work)
        for seed in [int(s) for s in a.seeds.split(",")]:
            if (method, seed) in done:
                continue
            r = run_one(method, seed, tp, weights, work, (ftr, fva), a)
            r["settings"] = {"rank": a.rank, "lr": a.lr, "steps": a.steps, "batch": [a.batch, a.seq],
                             "warmup": a.warmup, "threads": a.threads, "corpus_sha256": sha}
            results.append(r)
            json.dump(results, open(results_path, "w"))
            print(f"{method:7s} seed {seed}: trainable {r['trainable']}, val loss "
                  f"{r['val_loss'][0][1]:.4f} -> {r['val_loss'][-1][1]:.4f}, {r['seconds']} s", flush=True)
    print_table(results)


def print_table(results):
    by = {}
    for r in results:
        by.setdefault(r["method"], []).append(r)
    print("| method | trainable | val loss: step 0 | " +
          " | ".join(f"step {s}" for s, _ in results[0]["val_loss"][1:]) + " | train loss, last 20 steps |")
    print("|---|---|---|" + "---|" * (len(results[0]["val_loss"]) - 1) + "---|")
    for m in METHODS:
        rs = by.get(m)
        if not rs:
            continue
        cols = []
        for i in range(len(rs[0]["val_loss"])):
            v = np.array([r["val_loss"][i][1] for r in rs])
            cols.append(f"{v.mean():.4f} ± {v.std():.4f}" if len(v) > 1 else f"{v[0]:.4f}")
        tail = np.array([np.mean(r["train_loss"][-20:]) for r in rs])
        print(f"| {m} | {rs[0]['trainable']} | " + " | ".join(cols) + f" | {tail.mean():.4f} ± {tail.std():.4f} |")


if __name__ == "__main__":
    main()
