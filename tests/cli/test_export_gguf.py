#!/usr/bin/env python3
"""End-to-end test of `ckptkit export-gguf`, numpy only, on the real Llama pair of ../shared.

- The independent GGUF reader (gguf_reader.py) parses llama.cpp's stories260K.gguf whole, and
  every tensor of its HF twin maps onto it: names by the table, q/k rows by LlamaModel.permute.
- Adapters with per-module ranks and alphas (svd-init --energy: rank_pattern + alpha_pattern; a
  hand-written one with rsLoRA, alpha_pattern and a LoRA on the embedding) are exported; for every
  module the delta llama.cpp applies, (adapter.lora.alpha / rank) * lora_b @ lora_a with rank =
  lora_b's ne[0], equals PEFT's scale * B @ A mapped the same way, within 1e-6 relative (f32),
  and within the type's rounding for f16, bf16 and q8_0. The loader's shape checks
  (llama-adapter.cpp) hold against the base's GGUF tensors.
- Bad input exits 2 with one line; an existing file is kept without --force.
"""
import json
import os
import shutil
import tempfile

import numpy as np

import cktest
import gguf_reader
from cktest import PEFT_PREFIX, Checks, run

check = Checks()


def permute(w, n_head, n_head_kv):
    """LlamaModel.permute of llama.cpp's convert_hf_to_gguf.py (conversion/llama.py)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


LAYER = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
         "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
         "mlp.down_proj": "ffn_down"}


def gguf_name(module):
    if module == "model.embed_tokens":
        return "token_embd"
    if module == "lm_head":
        return "output"
    parts = module.split(".")
    return f"blk.{parts[2]}.{LAYER['.'.join(parts[3:])]}"


def to_gguf_layout(module, w, cfg):
    """What llama.cpp's converter does to a base weight of `module` (torch [out, in])."""
    if module.endswith("q_proj"):
        return permute(w, cfg["num_attention_heads"], cfg["num_attention_heads"])
    if module.endswith("k_proj"):
        return permute(w, cfg["num_attention_heads"], cfg["num_key_value_heads"])
    return w


def check_mapping(hf, gg, cfg):
    r = gguf_reader.read_gguf(gg)
    t = r["tensors"]
    check(r["version"] == 3 and len(r["kv"]) == 19 and len(t) == 48 and r["data_end"] == r["size"]
          and len(r["kv"]["tokenizer.ggml.tokens"]) == 512,
          f"stories260K.gguf parses whole: v{r['version']}, {len(r['kv'])} keys, {len(t)} tensors, "
          f"{r['size']} bytes, a 512-token vocabulary")
    w = cktest.read_checkpoint(hf)
    same = 0
    for name, a in w.items():
        module = name[: -len(".weight")]
        if name.endswith("norm.weight"):
            parts = module.split(".")
            g = ("output_norm" if module == "model.norm" else
                 f"blk.{parts[2]}.{'attn_norm' if parts[3] == 'input_layernorm' else 'ffn_norm'}")
        else:
            g = gguf_name(module)
        same += np.array_equal(to_gguf_layout(module, a, cfg), t[g + ".weight"])
    check(same == len(w) == 47,
          f"each of the {len(w)} HF tensors equals its GGUF tensor by name table and q/k "
          f"permutation ({same} equal)")
    return r


def peft_deltas(adapter_dir):
    """module -> PEFT's delta in the base weight's torch layout, float64 (embeddings: [vocab, dim])."""
    cfg = json.load(open(os.path.join(adapter_dir, "adapter_config.json")))
    ad, _ = cktest.read_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"))
    out = {}
    for k in ad:
        for a_suffix, b_suffix, emb in ((".lora_A.weight", ".lora_B.weight", False),
                                        (".lora_embedding_A", ".lora_embedding_B", True)):
            if k.endswith(a_suffix):
                m = k[len(PEFT_PREFIX):-len(a_suffix)]
                A = ad[k].astype(np.float64)
                B = ad[PEFT_PREFIX + m + b_suffix].astype(np.float64)
                d = cktest.lora_scaling(cfg, m) * (B @ A)
                out[m] = d.T if emb else d
    return out


def llama_cpp_deltas(path):
    """GGUF tensor -> the delta llama.cpp's adapter applies (llama-adapter.h: scale = alpha / rank,
    rank = lora_b ne[0]), in the base tensor's torch layout; plus the file's reading."""
    r = gguf_reader.read_gguf(path)
    alpha = r["kv"]["adapter.lora.alpha"]
    out = {}
    for name, a in r["tensors"].items():
        if not name.endswith(".lora_a"):
            continue
        base = name[: -len(".lora_a")]
        b = r["tensors"][base + ".lora_b"].astype(np.float64)
        rank = r["ne"][base + ".lora_b"][0]
        a = a.astype(np.float64)
        # token_embd: lora_a is A^T [vocab, r]; the delta rows are tokens (get_rows of a, then b).
        d = (a @ b.T) if base == "token_embd.weight" else (b @ a)
        out[base] = (alpha / rank) * d
    return out, r


def compare(label, adapter_dir, gguf_path, cfg, base_gguf, tol):
    ref = peft_deltas(adapter_dir)
    got, r = llama_cpp_deltas(gguf_path)
    worst, n, shapes_ok = 0.0, 0, True
    for module, d in ref.items():
        g = gguf_name(module) + ".weight"
        if g not in got:
            worst = float("inf")
            continue
        want = to_gguf_layout(module, d, cfg)
        worst = max(worst, float(np.linalg.norm(got[g] - want) / np.linalg.norm(want)))
        n += 1
        # llama_adapter_lora_init's checks against the base model's tensor
        ne_a, ne_b, ne_m = r["ne"][g + ".lora_a"], r["ne"][g + ".lora_b"], base_gguf["ne"][g]
        if g == "token_embd.weight":
            shapes_ok &= ne_m[0] == ne_b[1] and ne_m[1] == ne_a[1]
        else:
            shapes_ok &= ne_m[0] == ne_a[0] and ne_m[1] == ne_b[1] and ne_a[1] == ne_b[0]
    check(n == len(ref) == len(got) and worst <= tol,
          f"{label}: llama.cpp's delta equals PEFT's on {n}/{len(ref)} modules "
          f"(worst relative difference {worst:.2e}, bound {tol:g})")
    check(shapes_ok, f"{label}: lora_a/lora_b shapes pass llama.cpp's loader checks against the base")
    kv, types = r["kv"], r["kv_types"]
    check(kv.get("general.type") == "adapter" and kv.get("adapter.type") == "lora"
          and kv.get("general.architecture") == "llama" and types.get("adapter.lora.alpha") == 6,
          f"{label}: general.type adapter, adapter.type lora, architecture llama, alpha f32")
    return r


def q8_matches_gguf_py(q8, f32):
    """gguf-py quants.Q8_0.quantize_blocks, then dequantize_blocks, against the reader's values."""
    n = 0
    for name, t in q8["types"].items():
        if t != "Q8_0":
            continue
        blocks = f32["tensors"][name].astype(np.float32).reshape(-1, 32)
        d = np.abs(blocks).max(axis=1, keepdims=True) / np.float32(127)
        with np.errstate(divide="ignore"):
            inv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
        x = blocks * inv
        a = np.abs(x)
        floored = np.floor(a)
        qs = np.sign(x) * (floored + np.floor(np.float32(2) * (a - floored)))
        want = (d.astype(np.float16).astype(np.float32) * qs.astype(np.int8).astype(np.float32))
        if not np.array_equal(want.reshape(-1), q8["tensors"][name].reshape(-1)):
            return False
        n += 1
    return n > 0


def hand_written_adapter(d, w):
    """rsLoRA, a global r/alpha with rank_pattern and alpha_pattern, q/k/v/o/down and an embedding."""
    rng = np.random.default_rng(7)
    mods = {"model.layers.0.self_attn.q_proj": 4, "model.layers.0.self_attn.k_proj": 2,
            "model.layers.1.self_attn.v_proj": 8, "model.layers.2.self_attn.o_proj": 4,
            "model.layers.4.mlp.down_proj": 3}
    arrays = {}
    for m, r in mods.items():
        out_f, in_f = w[m + ".weight"].shape
        arrays[PEFT_PREFIX + m + ".lora_A.weight"] = rng.standard_normal((r, in_f)).astype(np.float32) * 0.1
        arrays[PEFT_PREFIX + m + ".lora_B.weight"] = rng.standard_normal((out_f, r)).astype(np.float32) * 0.1
    vocab, dim = w["model.embed_tokens.weight"].shape
    arrays[PEFT_PREFIX + "model.embed_tokens.lora_embedding_A"] = rng.standard_normal((4, vocab)).astype(np.float32)
    arrays[PEFT_PREFIX + "model.embed_tokens.lora_embedding_B"] = rng.standard_normal((dim, 4)).astype(np.float32)
    os.makedirs(d)
    cktest.write_safetensors(os.path.join(d, "adapter_model.safetensors"), arrays, {"format": "pt"})
    cfg = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "use_rslora": True,
           "rank_pattern": {"k_proj": 2, "v_proj": 8, "down_proj": 3},
           "alpha_pattern": {"o_proj": 3.0, "v_proj": 32},
           "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj", "embed_tokens"],
           "task_type": "CAUSAL_LM", "base_model_name_or_path": "stories260K", "bias": "none",
           "fan_in_fan_out": False, "lora_dropout": 0.0, "init_lora_weights": True}
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump(cfg, f)


def main():
    hf = cktest.shared_path("real", "stories260K-hf")
    gg = cktest.shared_path("real", "stories260K-gguf", "stories260K.gguf")
    if not hf or not gg:
        check.exit()
    cfg = json.load(open(os.path.join(hf, "config.json")))
    tmp = tempfile.mkdtemp(prefix="ckpt-gguf-")
    try:
        base_gguf = check_mapping(hf, gg, cfg)
        # 1. per-layer ranks: rank_pattern + alpha_pattern as svd-init --energy writes them
        ad = os.path.join(tmp, "energy")
        run("svd-init", hf, "-o", ad, "--energy", "0.5", expect=0)
        acfg = json.load(open(os.path.join(ad, "adapter", "adapter_config.json")))
        out = os.path.join(tmp, "energy.gguf")
        p = run("export-gguf", ad, "--base", hf, "-o", out, "--json", expect=0)
        if check(p.returncode == 0, "export-gguf of an svd-init --energy adapter: exit 0"):
            rep = json.loads(p.stdout)
            ranks = {r["rank"] for r in rep["tensors"]}
            check(len(acfg.get("rank_pattern", {})) > 0 and len(ranks) > 3
                  and rep["totals"]["rope_permuted"] == 10 and rep["totals"]["lora_b_rescaled"] > 0,
                  f"{len(ranks)} distinct ranks, {rep['totals']['lora_b_rescaled']} lora_b rescaled, "
                  f"{rep['totals']['rope_permuted']} q/k permuted")
            compare("energy adapter, f32", os.path.join(ad, "adapter"), out, cfg, base_gguf, 1e-6)
            # What llama.cpp's own converter would do: one lora_alpha, llama.cpp's alpha / rank.
            _, mods = cktest.read_lora(os.path.join(ad, "adapter"))
            off = [acfg["lora_alpha"] / A.shape[0] / cktest.lora_scaling(acfg, m)
                   for m, (A, B) in mods.items()]
            wrong = [f for f in off if abs(f - 1) > 1e-6]
            check(len(wrong) > 0, f"without the fold (convert_lora_to_gguf.py's single lora_alpha "
                                  f"{acfg['lora_alpha']}), {len(wrong)}/{len(off)} modules would load at "
                                  f"{min(off):.3g}x to {max(off):.3g}x PEFT's scale")
        # 2. rsLoRA + patterns + embedding, every outtype
        hand = os.path.join(tmp, "hand")
        hand_written_adapter(hand, cktest.read_checkpoint(hf))
        for outtype, tol in (("f32", 1e-6), ("f16", 2e-3), ("bf16", 1.5e-2), ("q8_0", 2e-2)):
            out = os.path.join(tmp, f"hand-{outtype}.gguf")
            p = run("export-gguf", hand, "--base", hf, "-o", out, "--outtype", outtype, expect=0)
            if check(p.returncode == 0, f"export-gguf --outtype {outtype}: exit 0"):
                r = compare(f"rsLoRA + patterns + embedding, {outtype}", hand, out, cfg, base_gguf, tol)
                if outtype == "q8_0":
                    exact = q8_matches_gguf_py(r, gguf_reader.read_gguf(os.path.join(tmp, "hand-f32.gguf")))
                    check(exact, "q8_0: every Q8_0 tensor equals gguf-py's quantizer (np_roundf of "
                                 "x * (1/d), d = max|x|/127 as f16) applied to the f32 export, bit for bit")
                    q8 = [n for n, t in r["types"].items() if t == "Q8_0"]
                    f16 = [n for n, t in r["types"].items() if t == "F16"]
                    ok = all(r["ne"][n][0] % 32 == 0 for n in q8) and all(r["ne"][n][0] % 32 for n in f16)
                    check(q8 and f16 and ok and len(q8) + len(f16) == len(r["types"]),
                          f"q8_0: {len(q8)} tensors Q8_0, {len(f16)} with rows not a multiple of 32 "
                          f"in F16 (as llama.cpp's converter)")
        # 3. --alpha: another global alpha, the same deltas
        out = os.path.join(tmp, "alpha.gguf")
        run("export-gguf", hand, "--base", hf, "-o", out, "--alpha", "16", expect=0)
        r = compare("--alpha 16", hand, out, cfg, base_gguf, 1e-6)
        check(r["kv"]["adapter.lora.alpha"] == 16.0, "--alpha 16 is written")
        # 4. errors: one line, exit 2, nothing written or replaced
        before = open(out, "rb").read()
        p = run("export-gguf", hand, "--base", hf, "-o", out, expect=2)
        check(p.returncode == 2 and open(out, "rb").read() == before,
              "an existing .gguf without --force: exit 2, file kept")
        notgguf = os.path.join(tmp, "notes.txt")
        with open(notgguf, "w") as f:
            f.write("mine\n")
        p = run("export-gguf", hand, "--base", hf, "-o", notgguf, "--force", expect=2)
        check(p.returncode == 2 and open(notgguf).read() == "mine\n",
              "--force onto a file that is not GGUF: exit 2, file kept")
        cases = [((ad, "--base", cktest.SAMPLE), "config.json", "a base llama.cpp does not map this way"),
                 ((hand, "--base", hf, "--outtype", "q4_k"), "--outtype", "an unknown --outtype")]
        mpo = os.path.join(tmp, "mpo")
        run("mpo-init", hf, "-o", mpo, "--bond", "2", expect=0)
        cases.append(((mpo, "--base", hf), "MPO", "an MPO adapter"))
        dora = os.path.join(tmp, "dora")
        shutil.copytree(hand, dora)
        c = json.load(open(os.path.join(dora, "adapter_config.json")))
        c["use_dora"] = True
        json.dump(c, open(os.path.join(dora, "adapter_config.json"), "w"))
        arrays, _ = cktest.read_safetensors(os.path.join(dora, "adapter_model.safetensors"))
        arrays = {k: v for k, v in arrays.items() if "embed_tokens" not in k}
        for k in list(arrays):
            if k.endswith(".lora_B.weight"):
                m = k[: -len(".lora_B.weight")]
                arrays[m + ".lora_magnitude_vector"] = np.ones(arrays[k].shape[0], np.float32)
        cktest.write_safetensors(os.path.join(dora, "adapter_model.safetensors"), arrays,
                                 {"format": "pt"})
        cases.append(((dora, "--base", hf), "DoRA", "a DoRA adapter"))
        head = os.path.join(tmp, "head")
        shutil.copytree(hand, head)
        arrays, _ = cktest.read_safetensors(os.path.join(head, "adapter_model.safetensors"))
        arrays[PEFT_PREFIX + "lm_head.lora_A.weight"] = np.ones((4, 64), np.float32)
        arrays[PEFT_PREFIX + "lm_head.lora_B.weight"] = np.ones((512, 4), np.float32)
        cktest.write_safetensors(os.path.join(head, "adapter_model.safetensors"), arrays,
                                 {"format": "pt"})
        cases.append(((head, "--base", hf), "lm_head", "lm_head on a base with tied embeddings"))
        for args, needle, what in cases:
            bad = os.path.join(tmp, "bad.gguf")
            p = run("export-gguf", *args, "-o", bad, expect=2)
            check(p.returncode == 2 and needle in p.stderr and len(p.stderr.strip().splitlines()) == 1
                  and not os.path.exists(bad), f"{what}: exit 2, one line naming it, nothing written")
        leftovers = [f for f in os.listdir(tmp) if ".tmp-" in f]
        check(not leftovers, f"no temporary left beside the outputs ({leftovers})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    check.exit()


if __name__ == "__main__":
    main()
