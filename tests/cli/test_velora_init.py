#!/usr/bin/python3
"""End-to-end test of `ckptkit velora-init` against an independent numpy implementation of VeLoRA's
sub-token split (PEFT's zero padding), batch-average and top-singular vectors, energy kept and the
weight-gradient proxy error; multi-file concatenation; PEFT key naming and config; --sweep outputs;
bad input (exit 2, one line naming the file and the module, no output left); and, when ../shared is
present, the real bytegpt activations."""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

import cktest
from cktest import Checks, write_safetensors

BIN = os.environ.get("CKPTKIT_BIN", "ckptkit")
SHARED = os.environ.get("CKPTKIT_SHARED", "")
VEC_TOL = 1e-6      # vectors are stored as f32
FID_TOL = 1e-5      # fidelity numbers are rounded to 6 significant digits in report.json
SUFFIX = ".lora_velora_embed"
PREFIX = "base_model.model."

check = Checks()


def read_safetensors(path):
    tensors, meta = cktest.read_safetensors(path, raw=True)
    for name, (dtype, _, _) in tensors.items():
        check(dtype == "F32", "%s stored as F32 (got %s)" % (name, dtype))
    return {k: cktest.decode(*v) for k, v in tensors.items()}, meta or {}


def run(args):
    r = subprocess.run([BIN, "velora-init"] + args, capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


# ---- independent reference (numpy, f64) ----
def subtokens(x, m):
    d = x.shape[1]
    g = -(-d // m)
    xp = np.zeros((x.shape[0], m * g))
    xp[:, :d] = x
    return xp.reshape(-1, g), g


def normalize(v):
    n = np.linalg.norm(v)
    return np.ones_like(v) / np.sqrt(v.size) if n == 0 else v / n


def ref_vector(x, m, init):
    s, _ = subtokens(x, m)
    mean = s.mean(axis=0)
    if init == "batch-average":
        v = normalize(mean)
    else:
        v = np.linalg.svd(s, full_matrices=False)[2][0]
        if v @ mean < 0:
            v = -v
    return v


def ref_fidelity(x, m, v):
    s, g = subtokens(x, m)
    z = s @ v
    xhat = (z[:, None] * v[None, :]).reshape(x.shape[0], -1)[:, :x.shape[1]]  # PEFT cuts the padding
    energy = (z ** 2).sum() / (s ** 2).sum()
    full = x.T @ x
    grad = np.linalg.norm(xhat.T @ xhat - full) / np.linalg.norm(full)
    return energy, grad


def adapter_extension(tmp, rng):
    """--adapter: an svd-init PiSSA adapter of the bundled sample, extended for PEFT's VeLoRA."""
    pissa = os.path.join(tmp, "pissa")
    cktest.run("svd-init", cktest.SAMPLE, "-o", pissa, "--rank", 4, "--target", "fc1,fc2", expect=0)
    w = cktest.read_checkpoint(cktest.SAMPLE)
    acts = {}
    for name, a in w.items():
        if name.endswith((".fc1.weight", ".fc2.weight")):
            d = a.shape[1]
            acts[name[: -len(".weight")]] = (rng.normal(size=d) + rng.normal(size=(64, d))).astype(np.float32)
    act = os.path.join(tmp, "sample-acts.safetensors")
    write_safetensors(act, acts)
    out = os.path.join(tmp, "pissa-velora")
    M = 32
    p = cktest.run("velora-init", act, "-o", out, "--groups", M, "--adapter", pissa, expect=0)
    if not check(p.returncode == 0, "velora-init --adapter (svd-init output root): exit 0"):
        return
    src = cktest.read_checkpoint(os.path.join(pissa, "adapter"), raw=True)
    ext = cktest.read_checkpoint(os.path.join(out, "adapter"), raw=True)
    extra = sorted(set(ext) - set(src))
    want = sorted(PREFIX + m + SUFFIX for m in acts)
    check(all(ext[k] == src[k] for k in src) and extra == want,
          "--adapter: the adapter's %d tensors byte-identical, plus one vector per LoRA module (%d)"
          % (len(src), len(extra)))
    vecs, _ = read_safetensors(os.path.join(out, "velora_embed.safetensors"))
    same = all(ext[k][0] == "F32" and ext[k][1] == [-(-acts[k[len(PREFIX):-len(SUFFIX)]].shape[1] // M)]
               and np.array_equal(np.frombuffer(ext[k][2], np.float32), vecs[k]) for k in extra)
    check(same, "--adapter: each vector is F32 [ceil(D/M)] and equals velora_embed.safetensors'")
    c0 = json.load(open(os.path.join(pissa, "adapter", "adapter_config.json")))
    c1 = json.load(open(os.path.join(out, "adapter", "adapter_config.json")))
    vc = c1.pop("velora_config", None)
    check(c1 == c0 and vc == {"num_groups": M, "scale": 1.0, "init_type": "random"},
          "--adapter: adapter_config.json unchanged but for velora_config %s" % vc)
    # A LoRA module without activations would get a random vector in PEFT: refused.
    partial = os.path.join(tmp, "partial-acts.safetensors")
    write_safetensors(partial, {k: v for k, v in acts.items() if not k.endswith("fc2")})
    bad_out = os.path.join(tmp, "bad-velora")
    p = cktest.run("velora-init", partial, "-o", bad_out, "--groups", M, "--adapter", pissa, expect=2)
    check(p.returncode == 2 and ".fc2" in p.stderr and "no activations" in p.stderr
          and not os.path.exists(bad_out),
          "--adapter with a LoRA module missing from the dump: exit 2 naming it, nothing written")
    dora = os.path.join(tmp, "dora-adapter")
    shutil.copytree(os.path.join(pissa, "adapter"), dora)
    cfg = json.load(open(os.path.join(dora, "adapter_config.json")))
    cfg["use_dora"] = True
    json.dump(cfg, open(os.path.join(dora, "adapter_config.json"), "w"))
    p = cktest.run("velora-init", act, "-o", bad_out, "--groups", M, "--adapter", dora, expect=2)
    check(p.returncode == 2 and "use_dora" in p.stderr and not os.path.exists(bad_out),
          "--adapter with use_dora: exit 2")


def main():
    tmp = tempfile.mkdtemp(prefix="ckptkit-velora-")
    rng = np.random.default_rng(1234)
    mods = {"model.layers.0.self_attn.q_proj": 24, "model.layers.0.mlp.fc2": 30}
    parts = []
    for tokens in (50, 30):
        t = {}
        for name, d in mods.items():
            mu = rng.normal(size=d)
            t[name] = (mu + rng.normal(size=(tokens, d)) * (1 + 0.5 * np.arange(d) / d)).astype(np.float16)
        parts.append(t)
    a, b = os.path.join(tmp, "a.safetensors"), os.path.join(tmp, "b.safetensors")
    write_safetensors(a, parts[0])
    write_safetensors(b, parts[1])
    x_all = {n: np.concatenate([parts[0][n], parts[1][n]]).astype(np.float64) for n in mods}
    cat = os.path.join(tmp, "cat.safetensors")
    write_safetensors(cat, {n: np.concatenate([parts[0][n], parts[1][n]]) for n in mods})

    M = 4  # fc2: D = 30 -> sub-token 8 with 2 padded zeros (PEFT's ceil + zero padding)
    for init in ("batch-average", "top-singular"):
        out = os.path.join(tmp, "out-" + init)
        rc, so, se = run([a, b, "-o", out, "--groups", str(M), "--init", init])
        check(rc == 0, "%s: exit 0 on two f16 files (rc %d, %s)" % (init, rc, se.strip()[-200:]))
        if rc != 0:
            continue
        check("| module" in so and "energy BA" in so, "%s: Markdown table on stdout" % init)
        vecs, meta = read_safetensors(os.path.join(out, "velora_embed.safetensors"))
        check(sorted(vecs) == sorted(PREFIX + n + SUFFIX for n in mods),
              "%s: keys are <prefix><module>%s: %s" % (init, SUFFIX, sorted(vecs)))
        check(meta.get("format") == "pt", "%s: safetensors metadata format=pt" % init)
        rep = json.load(open(os.path.join(out, "report.json")))
        rows = {r["module"]: r for r in rep["tensors"]}
        for name, d in mods.items():
            v = vecs[PREFIX + name + SUFFIX].astype(np.float64)
            g = -(-d // M)
            check(v.shape == (g,), "%s %s: shape (%d,) = ceil(%d/%d)" % (init, name, g, d, M))
            ref = ref_vector(x_all[name], M, init)
            err = np.abs(v - ref).max()
            check(err < VEC_TOL, "%s %s: v matches numpy (max abs diff %.2e < %.0e)" % (init, name, err, VEC_TOL))
            e_ref, g_ref = ref_fidelity(x_all[name], M, ref)
            fid = rows[name]["fidelity"]
            check(abs(fid["energy_kept"] - e_ref) < FID_TOL,
                  "%s %s: energy kept %.6f vs numpy %.6f" % (init, name, fid["energy_kept"], e_ref))
            check(abs(fid["grad_rel_err"] - g_ref) < FID_TOL,
                  "%s %s: grad proxy error %.6f vs numpy %.6f" % (init, name, fid["grad_rel_err"], g_ref))
            ba, ts = rows[name]["batch_average"]["energy_kept"], rows[name]["top_singular"]["energy_kept"]
            check(ts >= ba - 1e-6, "%s %s: top-singular energy %.6f >= batch-average %.6f" % (init, name, ts, ba))
            check(rows[name]["tokens"] == 80, "%s %s: 50 + 30 tokens concatenated" % (init, name))
            mem = rows[name]["memory"]
            want_full, want_z = 8 * 2048 * d * 2, 8 * 2048 * M * 2
            check(mem["full_bytes"] == want_full and mem["velora_bytes"] == want_z,
                  "%s %s: memory %d -> %d bytes (B*L*D*2 -> B*L*M*2)" % (init, name, mem["full_bytes"], mem["velora_bytes"]))
        cfg = json.load(open(os.path.join(out, "velora_config.json")))
        vc = cfg.get("velora_config", {})
        check(vc.get("num_groups") == M and vc.get("scale") == 1.0 and vc.get("init_type") == "random",
              "%s: velora_config %s" % (init, vc))
        check(sorted(cfg.get("target_modules", [])) == sorted(mods), "%s: target_modules lists the modules" % init)

    # Several files = one file holding the concatenation.
    rc1, _, _ = run([a, b, "-o", os.path.join(tmp, "two"), "--groups", "3", "--quiet"])
    rc2, _, _ = run([cat, "-o", os.path.join(tmp, "one"), "--groups", "3", "--quiet"])
    same = rc1 == 0 and rc2 == 0 and open(os.path.join(tmp, "two", "velora_embed.safetensors"), "rb").read() == \
        open(os.path.join(tmp, "one", "velora_embed.safetensors"), "rb").read()
    check(same, "two files give byte-identical vectors to one concatenated file")
    rc3, _, _ = run([a, b, "-o", os.path.join(tmp, "t1"), "--groups", "3", "--quiet", "--threads", "1",
                     "--init", "top-singular"])
    rc4, _, _ = run([a, b, "-o", os.path.join(tmp, "t2"), "--groups", "3", "--quiet", "--threads", "2",
                     "--init", "top-singular"])
    same = rc3 == 0 and rc4 == 0 and open(os.path.join(tmp, "t1", "velora_embed.safetensors"), "rb").read() == \
        open(os.path.join(tmp, "t2", "velora_embed.safetensors"), "rb").read()
    check(same, "--threads 1 and 2 give byte-identical vectors")

    # --target and --sweep.
    out = os.path.join(tmp, "sweep")
    rc, so, se = run([a, b, "-o", out, "--groups", "4", "--sweep", "--target", "fc2", "--quiet"])
    check(rc == 0, "--sweep --target fc2 exits 0 (%s)" % se.strip()[-200:])
    if rc == 0:
        vecs, _ = read_safetensors(os.path.join(out, "velora_embed.safetensors"))
        check(list(vecs) == [PREFIX + "model.layers.0.mlp.fc2" + SUFFIX], "--target fc2 keeps only fc2: %s" % list(vecs))
        html = open(os.path.join(out, "sweep.html")).read()
        check("<svg" in html and "Energy kept" in html, "sweep.html holds the SVG plot")
        check("| fc2 BA" in open(os.path.join(out, "sweep.md")).read(), "sweep.md holds the table")
        rep = json.load(open(os.path.join(out, "report.json")))
        sw = rep["tensors"][0]["sweep"]
        ms = sorted({p["groups"] for p in sw})
        check(ms == [1, 2, 4, 8, 16, 30], "sweep M = powers of two up to D, and D: %s" % ms)
        full = [p["fidelity"]["energy_kept"] for p in sw if p["groups"] == 30]
        check(all(abs(e - 1) < 1e-9 for e in full), "M = D keeps all the energy: %s" % full)
        x = x_all["model.layers.0.mlp.fc2"]
        worst = 0.0
        for p in sw:
            e_ref, _ = ref_fidelity(x, p["groups"], ref_vector(x, p["groups"], p["init"]))
            worst = max(worst, abs(p["fidelity"]["energy_kept"] - e_ref))
            if abs(p["fidelity"]["energy_kept"] - e_ref) >= FID_TOL:
                print("     sweep M=%d %s energy %.6f vs numpy %.6f" % (p["groups"], p["init"], p["fidelity"]["energy_kept"], e_ref))
        check(len(sw) > 0 and worst < FID_TOL,
              "sweep energies match numpy for all %d points (worst |diff| %.2e < %.0e)" % (len(sw), worst, FID_TOL))

    # ---- bad input: exit 2, one line naming file and module, no output left ----
    def bad(label, files, extra, want_file, want_module):
        o = os.path.join(tmp, "bad-" + label)
        if "--groups" not in extra:
            extra = ["--groups", "4"] + extra
        rc, _, se = run(files + ["-o", o] + extra)
        line = se.strip()
        ok = rc == 2 and want_file in line and (want_module is None or want_module in line) and "\n" not in line
        check(ok and not os.path.exists(o), "%s: exit 2 naming file/module (rc %d: %s)" % (label, rc, line[-160:]))

    three = os.path.join(tmp, "three.safetensors")
    write_safetensors(three, {"m.q_proj": np.ones((2, 3, 4), np.float32)})
    bad("3-D", [three], [], "three.safetensors", "m.q_proj")
    nan = os.path.join(tmp, "nan.safetensors")
    xn = np.ones((5, 8), np.float32)
    xn[3, 2] = np.nan
    write_safetensors(nan, {"m.fc1": xn})
    bad("NaN", [nan], [], "nan.safetensors", "m.fc1")
    bad("M>D", [a], ["--groups", "25"], "a.safetensors", "model.layers.0.self_attn.q_proj")  # D = 24
    bad("M=0", [a], ["--groups", "0"], "--groups 0", None)
    bad("M<0", [a], ["--groups", "-3"], "--groups -3", None)
    empty = os.path.join(tmp, "empty.safetensors")
    open(empty, "wb").close()
    bad("empty file", [empty], [], "empty.safetensors", None)
    notst = os.path.join(tmp, "notes.safetensors")
    open(notst, "w").write("this is not a safetensors file\n")
    bad("not safetensors", [notst], [], "notes.safetensors", None)
    other = os.path.join(tmp, "other.safetensors")
    write_safetensors(other, {"model.layers.0.self_attn.q_proj": parts[1]["model.layers.0.self_attn.q_proj"]})
    bad("names disagree", [a, other], [], "other.safetensors", "model.layers.0.mlp.fc2")
    zero = os.path.join(tmp, "zero.safetensors")
    write_safetensors(zero, {"m.fc1": np.zeros((0, 8), np.float32)})
    bad("0 tokens", [zero], [], "zero.safetensors", "m.fc1")

    adapter_extension(tmp, rng)

    # ---- real activations of bytegpt-base, when ../shared is there ----
    acts = os.path.join(SHARED, "data", "bytegpt-activations", "activations.safetensors") if SHARED else ""
    if acts and os.path.exists(acts):
        out = os.path.join(tmp, "bytegpt")
        rc, so, se = run([acts, "-o", out, "--groups", "32", "--target", "fc1", "--quiet"])
        check(rc == 0, "bytegpt fc1 inputs, M=32: exit 0 (%s)" % se.strip()[-200:])
        if rc == 0:
            rep = json.load(open(os.path.join(out, "report.json")))
            check(len(rep["tensors"]) == 6, "6 fc1 modules")
            hdr = open(acts, "rb").read()
            n = struct.unpack("<Q", hdr[:8])[0]
            info = json.loads(hdr[8:8 + n])["model.decoder.layers.0.fc1"]
            s0, s1 = info["data_offsets"]
            x = np.frombuffer(hdr[8 + n + s0:8 + n + s1], np.float32).reshape(info["shape"]).astype(np.float64)
            row = rep["tensors"][0]
            for key, init in (("batch_average", "batch-average"), ("top_singular", "top-singular")):
                e_ref, g_ref = ref_fidelity(x, 32, ref_vector(x, 32, init))
                check(abs(row[key]["energy_kept"] - e_ref) < FID_TOL and abs(row[key]["grad_rel_err"] - g_ref) < FID_TOL,
                      "bytegpt layers.0.fc1 %s: energy %.6f (numpy %.6f), grad err %.6f (numpy %.6f)"
                      % (init, row[key]["energy_kept"], e_ref, row[key]["grad_rel_err"], g_ref))
            check(row["memory"]["ratio"] == 12, "D/M = 384/32 = 12x memory ratio (%s)" % row["memory"]["ratio"])
    else:
        cktest.skip("bytegpt-activations: ../shared not present")

    shutil.rmtree(tmp, ignore_errors=True)
    check.exit()


if __name__ == "__main__":
    main()
