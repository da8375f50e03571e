#!/usr/bin/python3
"""End-to-end test of `ckptkit mpo-init` (DoTA): core layout and contraction against the independent
numpy tt-matrix in bench/mpo/tt_matrix.py, residual + MPO = W, truncation bounds, parameter budgets,
the adapter config, and bad input (exit 2 naming the tensor)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench", "mpo"))
import tt_matrix  # noqa: E402
import cktest  # noqa: E402
from cktest import Checks, write_safetensors  # noqa: E402

BIN = os.environ.get("CKPTKIT_BIN", "ckptkit")
EXACT_TOL = 1e-5      # relative error of an untruncated MPO in f32
RESIDUAL_TOL = 1e-6   # residual + MPO vs W (f32 residual: only the subtraction's rounding)
MATCH_TOL = 1e-4      # ckptkit's truncated MPO vs numpy's (same truncation, different SVD code)

check = Checks()


def read_safetensors(path):
    tensors, meta = cktest.read_safetensors(path)
    return tensors, meta or {}


def structured(rows, cols, seed):
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((rows, 6))
    v = rng.standard_normal((6, cols))
    w = (u / np.arange(1, 7)) @ v + 0.1 * rng.standard_normal((rows, cols))
    return w.astype(np.float32)


def run(args):
    p = subprocess.run([BIN] + args, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def rel(a, b):
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b.astype(np.float64)))


def main():
    tmp = tempfile.mkdtemp(prefix="ckptkit-mpo-")
    ck = os.path.join(tmp, "ckpt")
    os.makedirs(ck)
    weights = {
        "model.layers.0.self_attn.q_proj.weight": structured(48, 40, 1),
        "model.layers.0.self_attn.q_proj.bias": np.linspace(-1, 1, 48).astype(np.float32),
        "model.layers.0.mlp.fc1.weight": structured(64, 48, 2),
    }
    write_safetensors(os.path.join(ck, "model.safetensors"), weights, {"format": "pt"})
    with open(os.path.join(ck, "config.json"), "w") as f:
        json.dump({"model_type": "llama"}, f)

    # 1. Explicit factorization + bond cap: cores vs numpy's tt-matrix, residual + MPO = W.
    q = "model.layers.0.self_attn.q_proj"
    rs, cs, cap = [4, 3, 4], [2, 5, 4], 6
    out = os.path.join(tmp, "out1")
    rc, so, se = run(["mpo-init", ck, "-o", out, "--target", "q_proj", "--row-shape", "4,3,4",
                      "--col-shape", "2,5,4", "--bond", str(cap), "-q"])
    check(rc == 0, "explicit shapes + --bond exit 0 (rc=%d %s)" % (rc, se.strip()))
    cfg = json.load(open(os.path.join(out, "adapter", "adapter_config.json")))
    cores_st, meta = read_safetensors(os.path.join(out, "adapter", "adapter_model.safetensors"))
    report = json.load(open(os.path.join(out, "report.json")))
    check(cfg["peft_type"] == "ckptkit-mpo" and cfg["format_version"] == 1, "config format fields")
    check(meta.get("ckptkit_format") == "mpo", "safetensors metadata ckptkit_format=mpo")
    mod = cfg["modules"][q]
    check(mod["row_shape"] == rs and mod["col_shape"] == cs, "config row/col shapes %s %s" % (mod["row_shape"], mod["col_shape"]))
    cores = [cores_st["base_model.model.%s.mpo_core.%d" % (q, k)].astype(np.float64) for k in range(3)]
    shapes = [list(c.shape) for c in cores]
    want = [[mod["bonds"][k], rs[k], cs[k], mod["bonds"][k + 1]] for k in range(3)]
    check(shapes == want, "core shapes [r_{k-1}, i_k, j_k, r_k] = %s" % shapes)
    w = weights[q + ".weight"]
    ref_cores, ref_disc = tt_matrix.tt_matrix(w.astype(np.float64), rs, cs, cap=cap)
    check([list(c.shape) for c in ref_cores] == shapes, "numpy tt-matrix bonds equal ckptkit's %s" % mod["bonds"])
    mpo_np = tt_matrix.contract(cores)
    mpo_ein = tt_matrix.contract_einsum(cores)
    ref = tt_matrix.contract(ref_cores)
    d1 = rel(mpo_np, ref)
    check(d1 < MATCH_TOL, "ckptkit cores contracted in numpy == numpy TT-SVD (rel diff %.2e < %g)" % (d1, MATCH_TOL))
    d2 = rel(mpo_ein, mpo_np)
    check(d2 < 1e-12, "tensordot and einsum contractions agree (rel diff %.2e)" % d2)
    resid, _ = read_safetensors(os.path.join(out, "residual", "model.safetensors"))
    d3 = rel(resid[q + ".weight"] + mpo_np, w)
    check(d3 < RESIDUAL_TOL, "residual + MPO(cores) == W (rel %.2e < %g)" % (d3, RESIDUAL_TOL))
    check(np.array_equal(resid[q + ".bias"], weights[q + ".bias"]), "bias passed through unchanged")
    check(np.array_equal(resid["model.layers.0.mlp.fc1.weight"], weights["model.layers.0.mlp.fc1.weight"]),
          "non-target weight passed through unchanged")
    check(os.path.exists(os.path.join(out, "residual", "config.json")), "residual has config.json")
    row = report["tensors"][0]
    err = rel(mpo_np, w)
    bound = float(np.sqrt(np.sum(np.square(ref_disc)))) / float(np.linalg.norm(w))
    check(abs(row["rel_error"] - err) < 1e-4 * max(err, 1e-3), "report rel_error %.6g == measured %.6g" % (row["rel_error"], err))
    check(err <= bound * (1 + 1e-4), "error %.6g <= sqrt(sum eps_k^2)/||W|| = %.6g (numpy's discarded mass)" % (err, bound))
    rep_disc = row["discarded_rel_per_bond"]
    ref_rel = [x / float(np.linalg.norm(w)) for x in ref_disc]
    check(np.allclose(rep_disc, ref_rel, rtol=1e-3, atol=1e-6), "discarded per bond %s == numpy %s" % (rep_disc, ref_rel))
    check(row["params"] == sum(c.size for c in cores), "report params %d == core sizes" % row["params"])
    check(row["dense_params"] == 48 * 40, "dense params")

    # 2. No truncation reconstructs W; automatic factorization; auxiliary training set.
    out = os.path.join(tmp, "out2")
    rc, so, se = run(["mpo-init", ck, "-o", out, "--cores", "3", "--trainable", "auxiliary", "-q"])
    check(rc == 0, "--cores 3 untruncated exit 0 (rc=%d %s)" % (rc, se.strip()))
    cfg = json.load(open(os.path.join(out, "adapter", "adapter_config.json")))
    cores_st, _ = read_safetensors(os.path.join(out, "adapter", "adapter_model.safetensors"))
    for name in (q, "model.layers.0.mlp.fc1"):
        mod = cfg["modules"][name]
        cs_ = [cores_st["base_model.model.%s.mpo_core.%d" % (name, k)].astype(np.float64) for k in range(3)]
        e = rel(tt_matrix.contract(cs_), weights[name + ".weight"])
        check(e < EXACT_TOL, "%s: untruncated MPO %s x %s rel error %.2e < %g" % (name, mod["row_shape"], mod["col_shape"], e, EXACT_TOL))
        check(mod["trainable_cores"] == [0, 2] and mod["central_core"] == 1, "auxiliary: cores %s train" % mod["trainable_cores"])
    check(cfg["trainable"] == "auxiliary", "config trainable = auxiliary")

    # 3. Budgets and tolerance.
    out = os.path.join(tmp, "out3")
    rc, so, se = run(["mpo-init", ck, "-o", out, "--cores", "2", "--params-like-lora", "3", "-q"])
    check(rc == 0, "--params-like-lora exit 0 (rc=%d %s)" % (rc, se.strip()))
    for r in json.load(open(os.path.join(out, "report.json")))["tensors"]:
        budget = 3 * (r["shape"][0] + r["shape"][1])
        check(r["params"] <= budget, "%s: params %d <= LoRA-3 count %d (bonds %s)" % (r["module"], r["params"], budget, r["bonds"]))
    out = os.path.join(tmp, "out4")
    rc, so, se = run(["mpo-init", ck, "-o", out, "--cores", "3", "--tolerance", "0.2", "-q"])
    check(rc == 0, "--tolerance exit 0")
    for r in json.load(open(os.path.join(out, "report.json")))["tensors"]:
        check(r["rel_error"] <= 0.2 * (1 + 1e-4), "%s: tolerance 0.2 met (rel err %.4g, bonds %s)" % (r["module"], r["rel_error"], r["bonds"]))

    # 4. Bad input: exit 2 naming the tensor, with a suggestion.
    rc, so, se = run(["mpo-init", ck, "-o", os.path.join(tmp, "bad1"), "--target", "q_proj",
                      "--row-shape", "4,4,4", "--col-shape", "2,5,4"])
    check(rc == 2 and q + ".weight" in se and "64" in se, "wrong product: exit 2 naming the tensor (rc=%d: %s)" % (rc, se.strip()))
    rc, so, se = run(["mpo-init", ck, "-o", os.path.join(tmp, "bad2"), "--bond", "0"])
    check(rc == 2 and "--bond" in se, "--bond 0: exit 2 (rc=%d: %s)" % (rc, se.strip()))
    ck2 = os.path.join(tmp, "prime")
    os.makedirs(ck2)
    write_safetensors(os.path.join(ck2, "model.safetensors"), {"layers.0.proj.weight": structured(47, 40, 3)})
    rc, so, se = run(["mpo-init", ck2, "-o", os.path.join(tmp, "bad3"), "--cores", "3"])
    check(rc == 2 and "layers.0.proj.weight" in se and "prime" in se and "--row-shape" in se,
          "prime dimension: exit 2 naming the tensor with a suggestion (rc=%d: %s)" % (rc, se.strip()))
    check(not os.path.exists(os.path.join(tmp, "bad3")), "no output left behind on bad input")
    rc, so, se = run(["mpo-init", ck2, "-o", os.path.join(tmp, "ok3"), "--row-shape", "47,1", "--col-shape", "5,8", "--bond", "4", "-q"])
    check(rc == 0, "the suggested explicit factor of 1 works (rc=%d %s)" % (rc, se.strip()))

    # 5. QDoTA: the residual in NF4 (bitsandbytes layout), dequantized here independently.
    out = os.path.join(tmp, "out5")
    rc, so, se = run(["mpo-init", ck, "-o", out, "--target", "q_proj", "--cores", "2", "--bond", "4",
                      "--quantize-residual", "nf4", "-q"])
    check(rc == 0, "--quantize-residual nf4 exit 0 (rc=%d %s)" % (rc, se.strip()))
    if rc == 0:
        resid, _ = read_safetensors(os.path.join(out, "residual", "model.safetensors"))
        P = q + ".weight"
        keys = sorted(k for k in resid if k.startswith(P + "."))
        check(keys == sorted(P + s for s in [".absmax", ".nested_absmax", ".nested_quant_map", ".quant_map",
                                              ".quant_state.bitsandbytes__nf4"]), "bnb keys %s" % keys)
        state = json.loads(bytes(resid[P + ".quant_state.bitsandbytes__nf4"]).decode())
        check(state["quant_type"] == "nf4" and state["shape"] == [48, 40] and state["blocksize"] == 64,
              "quant_state %s" % state)
        packed = resid[P].reshape(-1)
        codes = np.empty(packed.size * 2, dtype=np.uint8)
        codes[0::2] = packed >> 4   # bnb: first element in the high nibble
        codes[1::2] = packed & 15
        codes = codes[:48 * 40]
        absmax = (resid[P + ".nested_quant_map"][resid[P + ".absmax"]] *
                  np.repeat(resid[P + ".nested_absmax"], 256)[:resid[P + ".absmax"].size] + state["nested_offset"])
        deq = resid[P + ".quant_map"][codes] * np.repeat(absmax.astype(np.float32), 64)[:codes.size]
        cfg = json.load(open(os.path.join(out, "adapter", "adapter_config.json")))
        cores_st, _ = read_safetensors(os.path.join(out, "adapter", "adapter_model.safetensors"))
        cs_ = [cores_st["base_model.model.%s.mpo_core.%d" % (q, k)].astype(np.float64) for k in range(2)]
        mpo = tt_matrix.contract(cs_)
        w = weights[P]
        e_q = rel(deq.reshape(48, 40) + mpo, w)
        e_mpo = rel(mpo, w)
        row = json.load(open(os.path.join(out, "report.json")))["tensors"][0]
        check(abs(row["qdota_rel_error"] - e_q) < 1e-3 * e_q,
              "report qdota_rel_error %.5g == numpy dequant(NF4 residual) + MPO error %.5g" % (row["qdota_rel_error"], e_q))
        check(e_q < 0.1 * e_mpo, "4-bit residual + cores (%.4g) far better than the cores alone (%.4g)" % (e_q, e_mpo))
        check(cfg["residual_quantization"] == "nf4", "config residual_quantization = nf4")
        qc = json.load(open(os.path.join(out, "residual", "config.json"))).get("quantization_config", {})
        check(qc.get("bnb_4bit_quant_type") == "nf4", "residual config.json has a bnb quantization_config")

    # 6. QDoTA in the other formats: nf3 (ckptkit layout) and int8 (bnb row-wise), read back with the
    # independent readers; dequantized residual + MPO has the reported error.
    for scheme, key in (("nf3", ".quant_state.ckptkit"), ("int8", "SCB")):
        out = os.path.join(tmp, "out6-" + scheme)
        rc, so, se = run(["mpo-init", ck, "-o", out, "--target", "q_proj", "--cores", "2", "--bond", "4",
                          "--quantize-residual", scheme, "-q"])
        if not check(rc == 0, "--quantize-residual %s exit 0 (rc=%d %s)" % (scheme, rc, se.strip())):
            continue
        resid, _ = read_safetensors(os.path.join(out, "residual", "model.safetensors"))
        P = q + ".weight"
        deq, _ = cktest.dequant_any(resid, P)
        cores_st, _ = read_safetensors(os.path.join(out, "adapter", "adapter_model.safetensors"))
        mpo = tt_matrix.contract([cores_st["base_model.model.%s.mpo_core.%d" % (q, k)].astype(np.float64)
                                  for k in range(2)])
        e_q = rel(deq.reshape(48, 40) + mpo, weights[P])
        row = json.load(open(os.path.join(out, "report.json")))["tensors"][0]
        check(any(k.endswith(key) for k in resid) and abs(row["qdota_rel_error"] - e_q) < 1e-3 * e_q,
              "%s: report qdota_rel_error %.5g == numpy dequant + MPO error %.5g" % (scheme, row["qdota_rel_error"], e_q))

    shutil.rmtree(tmp, ignore_errors=True)
    check.exit()


if __name__ == "__main__":
    main()
