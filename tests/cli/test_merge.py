#!/usr/bin/env python3
"""End-to-end test of `ckptkit merge` on the bundled bf16 sample (and ../shared when present).

Round trips: svd-init (pissa, milora, sorsa) and mpo-init, then merge of residual + adapter gives W
back (f32: relative Frobenius error <= 1e-5; bf16: |W' - W| within half an ulp of the residual
entry plus half an ulp of the output plus f32 GEMM rounding, everywhere, with the fraction within
one ulp of W printed). --to-lora: the exact mode merges to the same weights as the PiSSA pair
(1e-5 relative); the truncated mode's squared error equals the dropped energy it reports (1e-3
relative) and that energy is the SVD tail (Eckart-Young, 1e-3 relative). --weights scales deltas.
--threads 1 and 2 give byte-identical outputs. Bad input exits 2 with one line naming the file and
module and leaves no output. Extraction (../shared bytegpt-base -> bytegpt-ft) then merge onto the
base reproduces the fine-tune within the energy svd-init reports as dropped.
"""
import json
import os
import subprocess
import tempfile

import numpy as np

import cktest
from cktest import PEFT_PREFIX, SAMPLE, Checks, bf16_ulp, read_checkpoint, rel_fro, run, same_files

check = Checks()


def targets_of(w):
    return [n for n, a in w.items() if a.ndim == 2 and n.endswith(".weight")
            and "embed" not in n and "lm_head" not in n]


def write_lora(d, cfg, mods):
    """mods: module -> (A, B) float32 arrays."""
    os.makedirs(d, exist_ok=True)
    arrays = {}
    for m, (A, B) in mods.items():
        arrays[PEFT_PREFIX + m + ".lora_A.weight"] = np.ascontiguousarray(A, np.float32)
        arrays[PEFT_PREFIX + m + ".lora_B.weight"] = np.ascontiguousarray(B, np.float32)
    cktest.write_safetensors(os.path.join(d, "adapter_model.safetensors"), arrays, {"format": "pt"})
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump(cfg, f)


def merge(*args, expect=0):
    p = run("merge", *args, expect=expect)
    return p


def check_f32_roundtrip(label, w, merged, targets, tol=1e-5):
    worst = max(rel_fro(merged[n], w[n]) for n in targets)
    check(worst <= tol, f"{label}: merged vs W, max relative Frobenius error {worst:.3g} (<= {tol:g}) "
          f"over {len(targets)} targets")
    same = all(np.array_equal(merged[n], w[n]) for n in w if n not in targets)
    check(same, f"{label}: non-target tensors unchanged")


def check_bf16_roundtrip(label, w, res, merged, mods, cfg, targets):
    """|W' - W| <= ulp(R)/2 + ulp(W')/2 + f32 rounding of the GEMM; prints the fraction within 1 ulp."""
    worst, within, exact, total, max_ulps = 0.0, 0, 0, 0, 0.0
    for n in targets:
        mod = n[:-len(".weight")]
        A, B = mods[mod]
        s = cktest.lora_scaling(cfg, mod)
        W, R, M = (x[n].astype(np.float64) for x in (w, res, merged))
        err = np.abs(M - W)
        r = A.shape[0]
        bound = 0.5 * bf16_ulp(R) + 0.5 * bf16_ulp(M) + 2.0 ** -24 * (
            2 * np.abs(W) + 2 * r * abs(s) * (np.abs(B) @ np.abs(A)))
        worst = max(worst, float((err / bound).max()))
        ulps = err / bf16_ulp(W)
        max_ulps = max(max_ulps, float(ulps.max()))
        within += int((ulps <= 1.0).sum())
        exact += int((err == 0).sum())
        total += W.size
    check(worst <= 1.0 + 1e-6, f"{label}: |merged - W| within ulp(R)/2 + ulp(out)/2 (+ f32 GEMM) everywhere: "
          f"max ratio {worst:.3f} (<= 1)")
    print(f"     {label}: {exact / total:.6f} of entries exactly W, {within / total:.6f} within one bf16 ulp "
          f"(issue target 0.999), max {max_ulps:.1f} ulp")
    check(all(np.array_equal(merged[n], w[n]) for n in w if n not in targets), f"{label}: non-targets unchanged")
    return within / total


def sorsa_mods(d):
    ad, _ = cktest.read_safetensors(os.path.join(d, "adapter_model.safetensors"))
    mods = {}
    for k in ad:
        if k.endswith(".sorsa_A"):
            m = k[len(PEFT_PREFIX):-len(".sorsa_A")]
            S = ad[PEFT_PREFIX + m + ".sorsa_S"].astype(np.float64)
            mods[m] = (ad[k].astype(np.float64), ad[PEFT_PREFIX + m + ".sorsa_B"].astype(np.float64) * S)
    return mods


def bad_case(tmp, what, args, names):
    out = os.path.join(tmp, "badout")
    p = merge(*args, "-o", out, expect=2)
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    ok = p.returncode == 2 and len(lines) == 1 and all(n in lines[0] for n in names) and not os.path.exists(out)
    check(ok, f"bad input, {what}: exit {p.returncode}, stderr {lines}")
    left = [f for f in os.listdir(tmp) if "badout" in f]
    check(not left, f"bad input, {what}: nothing left behind {left}")


def main():
    w_bf16 = read_checkpoint(os.path.join(SAMPLE, "model.safetensors"))
    targets = targets_of(w_bf16)
    with tempfile.TemporaryDirectory() as tmp:
        T = lambda *p: os.path.join(tmp, *p)
        # ---- f32: exact PiSSA, merge of the pair (both spellings) -------------------------------
        f32 = T("f32")
        subprocess.run([cktest.BIN, "convert", SAMPLE, "-o", f32, "--dtype", "f32", "-q"], check=True)
        w32 = read_checkpoint(os.path.join(f32, "model", "model.safetensors"))
        check(run("svd-init", f32, "-o", T("p32"), "--rank", "8", "--svd", "exact", expect=0).returncode == 0,
              "svd-init pissa (f32, exact, r=8) runs")
        check(merge(T("p32"), "-o", T("m32"), expect=0).returncode == 0, "merge OUT (residual + adapter pair) runs")
        check(merge(T("p32", "residual"), T("p32", "adapter"), "-o", T("m32b"), expect=0).returncode == 0,
              "merge RESIDUAL ADAPTER runs")
        m32 = read_checkpoint(T("m32"))
        check_f32_roundtrip("pissa f32", w32, m32, targets)
        check(same_files(T("m32"), T("m32b")) == [], "pair form and explicit form write identical files")
        rep = json.load(open(T("m32", "report.json")))
        check(len(rep["tensors"]) == len(targets) and all(
            k in rep["tensors"][0] for k in ("max_abs_change", "base_fro", "delta_fro", "merged_fro")),
            f"report: {len(rep['tensors'])} rows with max_abs_change and norms")
        check(os.path.exists(T("m32", "model", "config.json")), "config.json copied")
        check(sorted(os.listdir(T("m32"))) == [".ckptkit-output", "model", "report.json"],
              f"merge output root: model/ with report.json beside it: {sorted(os.listdir(T('m32')))}")

        # ---- bf16: randomized PiSSA r=16; threads 1 vs 2 -----------------------------------------
        check(run("svd-init", SAMPLE, "-o", T("p16"), "--rank", "16", expect=0).returncode == 0, "svd-init pissa bf16 runs")
        check(merge(T("p16"), "-o", T("m16a"), "--threads", "1", expect=0).returncode == 0, "merge --threads 1 runs")
        check(merge(T("p16"), "-o", T("m16b"), "--threads", "2", expect=0).returncode == 0, "merge --threads 2 runs")
        check(same_files(T("m16a"), T("m16b")) == [], "--threads 1 and 2: byte-identical outputs")
        cfg, mods = cktest.read_lora(T("p16", "adapter"))
        res = read_checkpoint(T("p16", "residual"))
        m16 = read_checkpoint(T("m16a"))
        check(cktest.dtypes_of(T("m16a"))[targets[0]] == "BF16", "output keeps the base dtype (BF16)")
        frac = check_bf16_roundtrip("pissa bf16", w_bf16, res, m16, mods, cfg, targets)
        rep16 = json.load(open(T("p16", "report.json")))
        before = sum(t["within_one_ulp"] * np.prod(t["shape"]) for t in rep16["tensors"]) / sum(
            np.prod(t["shape"]) for t in rep16["tensors"])
        print(f"     (svd-init's report: residual + s*B*A within one ulp of W for {before:.6f} before the output cast; "
              f"entries where |W_res| >> |W| cannot come back to one ulp of W from a bf16 residual)")
        check(frac >= before - 1e-3, f"merge's output cast keeps at least svd-init's within-one-ulp fraction "
              f"({frac:.6f} >= {before:.6f} - 1e-3)")

        # ---- milora and sorsa (bf16) --------------------------------------------------------------
        check(run("svd-init", SAMPLE, "-o", T("mi"), "--rank", "4", "--method", "milora", "--target", "fc1",
                  expect=0).returncode == 0, "svd-init milora runs")
        check(merge(T("mi"), "-o", T("mmi"), expect=0).returncode == 0, "merge milora pair runs")
        cfg, mods = cktest.read_lora(T("mi", "adapter"))
        check_bf16_roundtrip("milora bf16", w_bf16, read_checkpoint(T("mi", "residual")), read_checkpoint(T("mmi")),
                             mods, cfg, [n for n in targets if ".fc1." in n])
        check(run("svd-init", SAMPLE, "-o", T("so"), "--rank", "8", "--method", "sorsa", "--target", "q_proj,fc2",
                  expect=0).returncode == 0, "svd-init sorsa runs")
        check(merge(T("so"), "-o", T("mso"), expect=0).returncode == 0, "merge sorsa pair runs")
        cfg = json.load(open(T("so", "adapter", "adapter_config.json")))
        check_bf16_roundtrip("sorsa bf16", w_bf16, read_checkpoint(T("so", "residual")), read_checkpoint(T("mso")),
                             sorsa_mods(T("so", "adapter")), cfg,
                             [n for n in targets if ".q_proj." in n or ".fc2." in n])

        # ---- MPO (f32) -----------------------------------------------------------------------------
        if run("mpo-init", f32, "-o", T("mpo"), "--cores", "3", "--bond", "8", "--target", "v_proj",
               expect=0).returncode == 0:
            check(merge(T("mpo"), "-o", T("mmpo"), expect=0).returncode == 0, "merge mpo pair runs")
            check_f32_roundtrip("mpo f32", w32, read_checkpoint(T("mmpo")),
                                [n for n in targets if ".v_proj." in n])
        else:
            check(False, "mpo-init runs")

        # ---- --to-lora ----------------------------------------------------------------------------
        cfg0, mods0 = cktest.read_lora(T("p32", "adapter"))
        rng = np.random.default_rng(0)
        trained = {}
        for m, (A, B) in mods0.items():  # a "fine-tune": perturb both factors
            trained[m] = (A + 0.05 * np.abs(A).mean() * rng.standard_normal(A.shape),
                          B + 0.05 * np.abs(B).mean() * rng.standard_normal(B.shape))
        write_lora(T("trained"), cfg0, trained)
        check(merge(T("p32", "residual"), T("trained"), "-o", T("m_pissa"), expect=0).returncode == 0,
              "merge residual + trained PiSSA runs")
        check(merge("--to-lora", T("p32", "adapter"), T("trained"), "-o", T("lora2r"), expect=0).returncode == 0,
              "merge --to-lora (exact) runs")
        c2, l2 = cktest.read_lora(T("lora2r"))
        check(c2["r"] == 2 * cfg0["r"] and c2["lora_alpha"] == 2 * cfg0["lora_alpha"] and
              c2["init_lora_weights"] is True, f"exact: config r {c2['r']} alpha {c2['lora_alpha']} "
              f"init_lora_weights {c2['init_lora_weights']} (PEFT: 2r, 2 alpha, true)")
        check(merge(f32, T("lora2r"), "-o", T("m_lora"), expect=0).returncode == 0, "merge base + converted LoRA runs")
        mp, ml = read_checkpoint(T("m_pissa")), read_checkpoint(T("m_lora"))
        worst = max(rel_fro(ml[n], mp[n]) for n in targets)
        check(worst <= 1e-5, f"exact --to-lora on the original base = PiSSA pair: max rel error {worst:.3g} (<= 1e-5)")

        rk = 8
        check(merge("--to-lora", T("p32", "adapter"), T("trained"), "-o", T("lora8"), "--rank", str(rk),
                    expect=0).returncode == 0, f"merge --to-lora --rank {rk} runs")
        c8, l8 = cktest.read_lora(T("lora8"))
        rep8 = json.load(open(T("lora8", "report.json")))
        worst_err, worst_opt, fracs = 0.0, 0.0, []
        for row in rep8["tensors"]:
            m = row["module"]
            A0, B0 = mods0[m]
            A1, B1 = trained[m]
            s = cktest.lora_scaling(cfg0, m)
            D = s * (B1 @ A1 - B0 @ A0)
            A, B = l8[m]
            E = D - cktest.lora_scaling(c8, m) * (B @ A)
            err2, dropped = float((E ** 2).sum()), row["dropped_energy"]
            total = float((D ** 2).sum())
            sv = np.linalg.svd(D, compute_uv=False)
            tail = float((sv[rk:] ** 2).sum())
            worst_err = max(worst_err, abs(err2 - dropped) / (dropped + 1e-6 * total))
            worst_opt = max(worst_opt, abs(tail - dropped) / (tail + 1e-6 * total))
            fracs.append(dropped / total)
        check(worst_err <= 1e-3, f"truncated --to-lora: ||dW - s'B'A'||^2 vs reported dropped energy, max rel diff "
              f"{worst_err:.2e} (<= 1e-3); dropped fraction {min(fracs):.3g}..{max(fracs):.3g}")
        check(worst_opt <= 1e-3, f"truncated --to-lora: dropped energy = SVD tail sum sigma_i^2 (i > {rk}), max rel "
              f"diff {worst_opt:.2e} (<= 1e-3)")
        check(c8["r"] == rk and all(l8[m][0].shape[0] == rk for m in l8), f"truncated adapter has rank {rk}")

        # ---- --weights ----------------------------------------------------------------------------
        check(merge(f32, T("lora2r"), T("lora2r"), "--weights", "0.25,0.75", "-o", T("mw"), expect=0).returncode == 0,
              "--weights 0.25,0.75 runs")
        mw = read_checkpoint(T("mw"))
        worst = max(rel_fro(mw[n], ml[n]) for n in targets)
        check(worst <= 1e-6, f"0.25*d + 0.75*d = d: max rel error {worst:.3g} (<= 1e-6)")
        check(merge(f32, T("lora2r"), "--weights", "-1.5", "-o", T("mw2"), expect=0).returncode == 0, "--weights -1.5 runs")
        mw2 = read_checkpoint(T("mw2"))
        worst = 0.0
        for n in targets:
            m = n[:-len(".weight")]
            A, B = l2[m]
            want = w32[n].astype(np.float64) - 1.5 * cktest.lora_scaling(c2, m) * (B @ A)
            worst = max(worst, rel_fro(mw2[n], want))
        check(worst <= 1e-5, f"W - 1.5*s*B*A against numpy: max rel error {worst:.3g} (<= 1e-5)")

        # ---- --dtype ----------------------------------------------------------------------------------
        check(merge(SAMPLE, T("lora2r"), "--dtype", "f32", "-o", T("md"), expect=0).returncode == 0, "--dtype f32 runs")
        dts = set(cktest.dtypes_of(T("md")).values())
        cfgd = json.load(open(T("md", "model", "config.json")))
        check(dts == {"F32"} and cfgd.get("torch_dtype") == "float32",
              f"--dtype f32: every tensor {dts}, config torch_dtype {cfgd.get('torch_dtype')}")

        # ---- quantized base: dequantize + delta, floats out ------------------------------------
        check(run("svd-init", SAMPLE, "-o", T("p4"), "--rank", "4", "--target", "q_proj,fc1", expect=0).returncode == 0,
              "svd-init r=4 adapter for the quantized-base checks runs")
        for scheme in (["--scheme", "nf4"], ["--scheme", "int8"], ["--scheme", "nf3"]):
            tag = scheme[1]
            qd = T("q_" + tag)
            if run("quantize", SAMPLE, "-o", qd, *scheme, expect=0).returncode != 0:
                check(False, f"quantize {tag} runs")
                continue
            run("quantize", "--dequantize", qd, "-o", qd + "_deq", "--dtype", "f32", expect=0)
            ok1 = merge(qd, T("p4", "adapter"), "-o", qd + "_m32", "--dtype", "f32", expect=0).returncode == 0
            ok2 = merge(qd + "_deq", T("p4", "adapter"), "-o", qd + "_deqm32", "--dtype", "f32", expect=0).returncode == 0
            check(ok1 and ok2 and same_files(qd + "_m32", qd + "_deqm32", skip=("report.json", "config.json")) == [],
                  f"{tag} base: merge(quantized) = merge(dequantized) byte for byte (f32 out)")
            check(merge(qd, T("p4", "adapter"), "-o", qd + "_m", expect=0).returncode == 0, f"{tag} base: merge runs")
            got = cktest.dtypes_of(qd + "_m")
            cfgq = json.load(open(os.path.join(qd + "_m", "model", "config.json")))
            check(set(got) == set(w_bf16) and (tag == "int8" or set(got.values()) == {"BF16"})
                  and "quantization_config" not in cfgq,
                  f"{tag} base: same tensor names as the float model, dtypes {sorted(set(got.values()))} "
                  f"(original dtype; bnb int8 keeps fp16), no quantization_config")

        # ---- bad input ----------------------------------------------------------------------------
        q = "model.decoder.layers.0.self_attn.q_proj"
        base_cfg = {"peft_type": "LORA", "r": 2, "lora_alpha": 2, "target_modules": ["q_proj"]}
        write_lora(T("bad_missing"), base_cfg, {"model.decoder.layers.9.self_attn.q_proj":
                                                 (np.ones((2, 384)), np.ones((384, 2)))})
        write_lora(T("bad_shape"), base_cfg, {q: (np.ones((2, 100)), np.ones((384, 2)))})
        write_lora(T("bad_pattern"), dict(base_cfg, rank_pattern={"nonexistent_proj": 2}),
                   {q: (np.ones((2, 384)), np.ones((384, 2)))})
        write_lora(T("bad_inf"), base_cfg, {q: (np.full((2, 384), 1.5e19), np.full((384, 2), 1.5e19))})
        write_lora(T("bad_f16"), base_cfg, {q: (np.full((2, 384), 300.0), np.full((384, 2), 300.0))})
        write_lora(T("ok"), base_cfg, {q: (np.ones((2, 384)) * 1e-3, np.ones((384, 2)) * 1e-3)})
        bad_case(tmp, "module not in the base", [SAMPLE, T("bad_missing")],
                 ["bad_missing", "layers.9.self_attn.q_proj"])
        bad_case(tmp, "shape mismatch", [SAMPLE, T("bad_shape")], ["bad_shape", q])
        bad_case(tmp, "rank_pattern matching nothing", [SAMPLE, T("bad_pattern")],
                 ["bad_pattern", "nonexistent_proj"])
        bad_case(tmp, "weights count != adapters count", [SAMPLE, T("ok"), "--weights", "1,2"], ["--weights"])
        bad_case(tmp, "delta overflows f32/bf16 (2 * 2.25e38)", [SAMPLE, T("bad_inf")], ["bad_inf", q])
        bad_case(tmp, "merged 1.8e5 overflows --dtype f16", [SAMPLE, T("bad_f16"), "--dtype", "f16"], ["bad_f16", q])
        bad_case(tmp, "--to-lora with one adapter", ["--to-lora", T("ok")], ["--to-lora"])

        # ---- extraction on ../shared -------------------------------------------------------------
        base = cktest.shared_path("bytegpt-base")
        ft = cktest.shared_path("bytegpt-ft")
        if base and ft:
            check(run("svd-init", ft, "--base", base, "-o", T("ext"), "--energy", "0.9", expect=0).returncode == 0,
                  "extraction (svd-init --base --energy 0.9) runs")
            check(merge(base, T("ext", "adapter"), "-o", T("mext"), expect=0).returncode == 0,
                  "merge base + extracted adapter runs")
            bw, fw, mw = read_checkpoint(base), read_checkpoint(ft), read_checkpoint(T("mext"))
            rep = json.load(open(T("ext", "report.json")))
            worst, n_rows = 0.0, 0
            for row in rep["tensors"]:
                n = row["name"]
                D = fw[n].astype(np.float64) - bw[n].astype(np.float64)
                miss = float(((mw[n].astype(np.float64) - fw[n]) ** 2).sum()) / float((D ** 2).sum())
                worst = max(worst, abs(miss - (1 - row["energy_captured"])))
                n_rows += 1
            check(worst <= 1e-4, f"extraction + merge: ||merged - ft||^2/||ft - base||^2 = 1 - energy_captured "
                  f"within {worst:.2e} (<= 1e-4) over {n_rows} layers")
            ext_targets = {row["name"] for row in rep["tensors"]}
            check(all(np.array_equal(mw[n], bw[n]) for n in bw if n not in ext_targets),
                  "extraction + merge: other tensors are the base's")
        else:
            cktest.skip("extraction round trip: ../shared/data absent")
    check.exit()


if __name__ == "__main__":
    main()
