#!/usr/bin/python3
"""End-to-end: `ckptkit analyze-spectrum` on the bundled bf16 bytegpt-base (and on ../shared data
when present), checked against numpy: singular values, metrics, drift; bad input exits 2."""
import csv, json, os, shutil, struct, subprocess, sys, tempfile
import numpy as np

import cktest

BIN = os.environ["CKPTKIT_BIN"]
DATA = os.environ.get("CKPTKIT_DATA", os.path.join(os.path.dirname(__file__), "../../data"))
SHARED = os.environ.get("CKPTKIT_SHARED", "")
BASE = os.path.join(DATA, "bytegpt-base-bf16")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def run(*args, expect=0):
    p = subprocess.run([BIN, "analyze-spectrum", *args, "-q"], capture_output=True, text=True)
    if p.returncode != expect:
        print(p.stdout[-2000:], p.stderr[-2000:])
    check(p.returncode == expect, f"exit {p.returncode} (want {expect}) for {' '.join(args[:3])} ...")
    return p


def load(path):
    if os.path.isdir(path):
        path = os.path.join(path, "model.safetensors")
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        if info["dtype"] == "BF16":
            a = (np.frombuffer(data[b:e], dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] == "F32":
            a = np.frombuffer(data[b:e], dtype=np.float32)
        else:
            continue
        out[name] = a.reshape(info["shape"]).copy()
    return out


def save(path, tensors, metadata=None):
    header, off, blobs = {}, 0, []
    for name, a in tensors.items():
        a = np.ascontiguousarray(a, dtype=np.float32)
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
        blobs.append(a.tobytes())
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


tmp = tempfile.mkdtemp(prefix="ckptkit-spectrum-")
try:
    W = load(BASE)
    # 1. One checkpoint: files, singular values and metrics against numpy (f64 SVD of the same values).
    out = os.path.join(tmp, "one")
    p = run(BASE, "-o", out)
    rep = json.load(open(os.path.join(out, "report.json")))
    for f in ("report.json", "report.html", "spectrum.csv", "singular_values.csv", "skipped.csv"):
        check(os.path.exists(os.path.join(out, f)), f"{f} written")
    rows = {r["name"]: r for r in rep["tensors"]}
    check(len(rows) == 36, f"36 target matrices analysed (got {len(rows)})")
    sv = {}
    with open(os.path.join(out, "singular_values.csv")) as f:
        for r in csv.DictReader(f):
            sv.setdefault(r["name"], []).append(float(r["sigma"]))
    worst = 0.0
    for name in ["model.decoder.layers.0.self_attn.q_proj.weight", "model.decoder.layers.3.fc1.weight",
                 "model.decoder.layers.5.fc2.weight"]:
        s = np.linalg.svd(W[name].astype(np.float64), compute_uv=False)
        got = np.array(sv[name])
        err = np.max(np.abs(got - s)) / s[0]
        worst = max(worst, err)
        r = rows[name]
        check(abs(r["spectral_norm"] - s[0]) <= 1e-5 * s[0], f"{name}: sigma_1 {r['spectral_norm']} vs numpy {s[0]:.6g}")
        st = np.sum(s * s) / s[0] ** 2
        check(abs(r["stable_rank"] - st) <= 1e-5 * st, f"{name}: stable rank {r['stable_rank']} vs numpy {st:.6g}")
        e = np.cumsum(s * s) / np.sum(s * s)
        r90 = int(np.searchsorted(e, 0.9 * (1 - 1e-12)) + 1)
        check(r["energy_rank90"] == r90, f"{name}: energy rank 90% {r['energy_rank90']} vs numpy {r90}")
    check(worst < 1e-6, f"singular values vs numpy f64 SVD: max error {worst:.2e} of sigma_1 (tolerance 1e-6)")
    html = open(os.path.join(out, "report.html")).read()
    check("<script" not in html and html.count("http") == html.count("http://www.w3.org/2000/svg"),
          "report.html loads nothing from the network")
    check(html.count("<svg") >= 10, f"report.html has plots ({html.count('<svg')} svg)")
    check(p.stdout == "", f"-q prints nothing on stdout ({len(p.stdout)} characters)")
    p2 = subprocess.run([BIN, "analyze-spectrum", BASE, "-o", os.path.join(tmp, "md")], capture_output=True, text=True)
    check(p2.returncode == 0 and "| model.decoder.layers.0.fc1.weight" in p2.stdout, "Markdown table on stdout")

    # 2. Compare with itself: no drift, no intruders.
    out = os.path.join(tmp, "self")
    run(BASE, "--compare", BASE, "-o", out, "--target", "q_proj,fc1")
    rep = json.load(open(os.path.join(out, "report.json")))
    d = rep["drift"]
    check(len(d) == 12 and all(r["rel_delta_fro"] == 0 and r["intruders"] == 0 for r in d),
          f"W vs W: {len(d)} matrices, all zero drift and 0 intruders")
    check(all(r["angle_left_max_deg"] < 1e-3 for r in d), "W vs W: principal angles 0")

    # 3. LoRA adapter with one strong planted direction on layer 0 q_proj; fc1 gets a tiny one.
    rng = np.random.default_rng(0)
    ad = os.path.join(tmp, "adapter")
    os.makedirs(ad)
    q = "model.decoder.layers.0.self_attn.q_proj"
    f1 = "model.decoder.layers.2.fc1"
    Aq, Bq = rng.standard_normal((2, 384)).astype(np.float32), 0.02 * rng.standard_normal((384, 2)).astype(np.float32)
    Af, Bf = rng.standard_normal((2, 384)).astype(np.float32) * 1e-3, rng.standard_normal((1536, 2)).astype(np.float32)
    save(os.path.join(ad, "adapter_model.safetensors"),
         {f"base_model.model.{q}.lora_A.weight": Aq, f"base_model.model.{q}.lora_B.weight": Bq,
          f"base_model.model.{f1}.lora_A.weight": Af, f"base_model.model.{f1}.lora_B.weight": Bf}, {"format": "pt"})
    json.dump({"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj", "fc1"]},
              open(os.path.join(ad, "adapter_config.json"), "w"))
    out = os.path.join(tmp, "lora")
    run(BASE, "--adapter", ad, "-o", out, "--target", "q_proj,fc1")
    rep = json.load(open(os.path.join(out, "report.json")))
    d = {r["name"]: r for r in rep["drift"]}
    dq = 2.0 * Bq.astype(np.float64) @ Aq.astype(np.float64)
    wq = W[q + ".weight"].astype(np.float64)
    rel = np.linalg.norm(dq) / np.linalg.norm(wq)
    got = d[q + ".weight"]
    check(abs(got["rel_delta_fro"] - rel) <= 1e-4 * rel, f"adapter q_proj: rel drift {got['rel_delta_fro']} vs numpy {rel:.6g}")
    check(got["delta_rank99"] <= 2, f"adapter q_proj: dW rank99 {got['delta_rank99']} <= r = 2")
    # numpy intruder count for the merged weight (left vectors, top 10, eps 0.5)
    U0 = np.linalg.svd(wq)[0]
    Ut = np.linalg.svd(wq + dq)[0]
    n_intr = int(np.sum(np.abs(Ut[:, :10].T @ U0).max(axis=1) < 0.5))
    check(got["intruders"] == n_intr and n_intr > 0, f"adapter q_proj: {got['intruders']} intruders, numpy {n_intr} (> 0)")
    df = 2.0 * Bf.astype(np.float64) @ Af.astype(np.float64)
    relf = np.linalg.norm(df) / np.linalg.norm(W[f1 + ".weight"].astype(np.float64))
    gotf = d[f1 + ".weight"]["rel_delta_fro"]
    check(abs(gotf - relf) <= 1e-4 * relf, f"adapter fc1 (small update): rel drift {gotf} vs numpy {relf:.6g}")
    check(len(rep["drift"]) == 2, f"only adapted matrices get drift rows ({len(rep['drift'])})")

    # 4. Bad input: exit 2 with the tensor named, never a crash.
    other = os.path.join(tmp, "other.safetensors")
    Wm = {k: v for k, v in W.items()}
    Wm["model.decoder.layers.1.fc1.weight"] = Wm["model.decoder.layers.1.fc1.weight"][:100]
    save(other, Wm)
    p = run(BASE, "--compare", other, "-o", os.path.join(tmp, "bad1"), expect=2)
    check("model.decoder.layers.1.fc1.weight" in p.stderr, "shape mismatch names the tensor: " + p.stderr.strip()[:160])
    del Wm["model.decoder.layers.1.fc1.weight"]
    save(other, Wm)
    p = run(BASE, "--compare", other, "-o", os.path.join(tmp, "bad2"), expect=2)
    check("model.decoder.layers.1.fc1.weight" in p.stderr and "missing" in p.stderr, "missing tensor named")
    bad_ad = os.path.join(tmp, "adapter-other")
    os.makedirs(bad_ad)
    save(os.path.join(bad_ad, "adapter_model.safetensors"),
         {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": Aq,
          "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": Bq})
    json.dump({"peft_type": "LORA", "r": 2, "lora_alpha": 4}, open(os.path.join(bad_ad, "adapter_config.json"), "w"))
    p = run(BASE, "--adapter", bad_ad, "-o", os.path.join(tmp, "bad3"), expect=2)
    check("model.layers.0.self_attn.q_proj" in p.stderr, "adapter for another model names the module: " + p.stderr.strip()[:160])
    out = os.path.join(tmp, "onedim")
    run(BASE, "-o", out, "--target", "fc1,.*k_proj\\.bias")
    rep = json.load(open(os.path.join(out, "report.json")))
    check(len(rep["skipped"]) == 6 and all("1-D" in s["reason"] for s in rep["skipped"]),
          f"1-D targets listed as skipped ({len(rep['skipped'])}), 6 fc1 analysed ({len(rep['tensors'])})")

    # 5. The real pair from ../shared (skipped when absent): README says linear drift 13-21 %,
    #    90 % of it in rank 25-68.
    sb, sf = os.path.join(SHARED, "data/bytegpt-base"), os.path.join(SHARED, "data/bytegpt-ft")
    if SHARED and os.path.isdir(sb) and os.path.isdir(sf):
        out = os.path.join(tmp, "shared")
        run(sb, "--compare", sf, "-o", out)
        rep = json.load(open(os.path.join(out, "report.json")))
        rel = [r["rel_delta_fro"] for r in rep["drift"]]
        r90 = [r["delta_rank90"] for r in rep["drift"]]
        check(0.12 <= min(rel) and max(rel) <= 0.22, f"bytegpt ft drift {min(rel):.3f}..{max(rel):.3f} within 0.12..0.22")
        check(20 <= min(r90) and max(r90) <= 75, f"bytegpt dW 90% rank {min(r90)}..{max(r90)} within 20..75")
    else:
        cktest.skip("../shared/data not present")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

cktest.finish(failures)
