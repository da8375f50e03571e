#!/usr/bin/python3
"""MPO (DoTA) vs LoRA (PiSSA) captured energy at equal parameter counts, and decomposition time of
ckptkit mpo-init vs the numpy reference (bench/mpo/tt_matrix.py) on the same matrices.

Usage: bench/mpo/bench.py --bin build/ckptkit --data ../shared/data/bytegpt-base [--ranks 4,16,64]
       [--cores 2,3,5] [--qdota] [--reps 3]
Prints markdown tables (docs/bench-mpo.md holds a run). ckptkit runs with --threads 1 and numpy
with OPENBLAS_NUM_THREADS=1 (set before numpy is imported), so both are one-core timings.
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tt_matrix  # noqa: E402


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + a:8 + n + b], dtype=np.float32).reshape(info["shape"])
    return out


def nf4_dequant(t, p):
    """Dequantizes bnb's NF4 layout (6 keys under weight name p) in numpy."""
    state = json.loads(bytes(t[p + ".quant_state.bitsandbytes__nf4"]).decode())
    packed = t[p].reshape(-1)
    codes = np.empty(packed.size * 2, dtype=np.uint8)
    codes[0::2] = packed >> 4
    codes[1::2] = packed & 15
    n = int(np.prod(state["shape"]))
    codes = codes[:n]
    am = t[p + ".absmax"]
    absmax = t[p + ".nested_quant_map"][am] * np.repeat(t[p + ".nested_absmax"], 256)[:am.size] + np.float32(state["nested_offset"])
    return (t[p + ".quant_map"][codes] * np.repeat(absmax.astype(np.float32), state["blocksize"])[:n]).reshape(state["shape"])


def read_raw(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    dt = {"F32": np.float32, "U8": np.uint8}
    return {k: np.frombuffer(data[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]], dtype=dt[v["dtype"]]).reshape(v["shape"])
            for k, v in header.items() if k != "__metadata__" and v["dtype"] in dt}


def nf4_baseline(binary, data, out, weights, names):
    try:
        subprocess.run([binary, "quantize", data, "-o", out, "--force", "--threads", "1", "-q"], check=True)
        t = read_raw(os.path.join(out, "quantized", "model.safetensors"))
        err = sum(float(np.sum((nf4_dequant(t, nm).astype(np.float64) - weights[nm]) ** 2)) for nm in names)
        tot = sum(float(np.sum(weights[nm].astype(np.float64) ** 2)) for nm in names)
        return float(np.sqrt(err / tot))
    except Exception as e:  # the quantize subcommand is another issue's; report without the baseline
        print("(plain NF4 baseline unavailable: %s)\n" % e)
        return None


def run_ckptkit(binary, data, out, args):
    cmd = [binary, "mpo-init", data, "-o", out, "--force", "--threads", "1", "-q"] + args
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    rep = json.load(open(os.path.join(out, "report.json")))
    return rep, wall, " ".join(["ckptkit"] + cmd[1:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--ranks", default="4,16,64")
    ap.add_argument("--cores", default="2,3,5")
    ap.add_argument("--qdota", action="store_true")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    ranks = [int(x) for x in a.ranks.split(",")]
    cores_list = [int(x) for x in a.cores.split(",")]
    weights = read_safetensors(os.path.join(a.data, "model.safetensors"))
    tmp = tempfile.mkdtemp(prefix="bench-mpo-")
    commands = []

    # Singular values of every target once (PiSSA: rank-r truncated SVD energy).
    spectra = {}
    reports = {}
    for n in cores_list:
        for r in ranks:
            rep, wall, cmd = run_ckptkit(a.bin, a.data, os.path.join(tmp, "o"), ["--cores", str(n), "--params-like-lora", str(r)])
            commands.append(cmd)
            reports[(n, r)] = rep
    names = [row["name"] for row in reports[(cores_list[0], ranks[0])]["tensors"]]
    for name in names:
        spectra[name] = np.linalg.svd(weights[name].astype(np.float64), compute_uv=False)

    print("## Captured energy at equal parameter counts (bytegpt-base, %d matrices)\n" % len(names))
    print("Energy = 1 - sum ||W - W_approx||_F^2 / sum ||W||_F^2 over all targets. LoRA/PiSSA = rank-r truncated SVD "
          "(numpy, float64); MPO = `ckptkit mpo-init --cores N --params-like-lora r` (largest uniform bond cap with "
          "params <= r*(out+in) per matrix).\n")
    print("| LoRA rank r | params (LoRA) | PiSSA energy | " + " | ".join(
        "MPO N=%d params | MPO N=%d energy" % (n, n) for n in cores_list) + " |")
    print("|---:|---:|---:|" + "---:|---:|" * len(cores_list))
    for r in ranks:
        lora_params = sum(r * sum(weights[nm].shape) for nm in names)
        tot = sum(float(np.sum(spectra[nm] ** 2)) for nm in names)
        kept = sum(float(np.sum(spectra[nm][:r] ** 2)) for nm in names)
        cells = []
        for n in cores_list:
            rows = reports[(n, r)]["tensors"]
            p = sum(x["params"] for x in rows)
            err = sum((x["rel_error"] ** 2) * float(np.sum(spectra[x["name"]] ** 2)) for x in rows)
            cells.append("%d | %.4f" % (p, 1 - err / tot))
        print("| %d | %d | %.4f | %s |" % (r, lora_params, kept / tot, " | ".join(cells)))
    print()
    # Per-shape detail for the middle budget.
    r = ranks[len(ranks) // 2]
    print("Per shape at r=%d (median over matrices of the shape):\n" % r)
    print("| shape | PiSSA energy | " + " | ".join("MPO N=%d: row x col shape, bonds, params, energy" % n for n in cores_list) + " |")
    print("|---|---:|" + "---|" * len(cores_list))
    shapes = sorted({tuple(weights[nm].shape) for nm in names})
    for sh in shapes:
        nms = [nm for nm in names if tuple(weights[nm].shape) == sh]
        pissa = np.median([np.sum(spectra[nm][:r] ** 2) / np.sum(spectra[nm] ** 2) for nm in nms])
        cells = []
        for n in cores_list:
            rows = [x for x in reports[(n, r)]["tensors"] if x["name"] in nms]
            x0 = rows[0]
            cells.append("%s x %s, %s, %d, %.4f" % (x0["row_shape"], x0["col_shape"], x0["bonds"], x0["params"],
                                                    np.median([x["energy_captured"] for x in rows])))
        print("| %dx%d | %.4f | %s |" % (sh[0], sh[1], pissa, " | ".join(cells)))
    print()

    if a.qdota:
        print("## QDoTA: NF4 residual + cores vs W\n")
        base = nf4_baseline(a.bin, a.data, os.path.join(tmp, "nf4"), weights, names)
        if base is not None:
            commands.append("ckptkit quantize %s -o $TMP/nf4 --threads 1 -q" % a.data)
            print("Baseline, plain NF4 of W (QLoRA storage, `ckptkit quantize`, dequantized in numpy): "
                  "relative error %.4f.\n" % base)
        print("| cores | LoRA-equal budget r | MPO rel. error | 4-bit residual + cores rel. error |")
        print("|---:|---:|---:|---:|")
        for n in cores_list:
            for r in ranks:
                try:
                    rep, wall, cmd = run_ckptkit(a.bin, a.data, os.path.join(tmp, "q"),
                                                 ["--cores", str(n), "--params-like-lora", str(r), "--quantize-residual", "nf4"])
                except subprocess.CalledProcessError:
                    print("| %d | %d | (--quantize-residual unavailable) | |" % (n, r))
                    continue
                commands.append(cmd)
                t = rep["totals"]
                print("| %d | %d | %.4f | %.4f |" % (n, r, t["rel_error"], t["qdota_rel_error"]))
        print()

    # Timing: ckptkit's per-matrix decompose_seconds (TT-SVD only, one thread) vs numpy's tt_matrix in
    # float32 (LAPACK sgesdd via numpy, one OpenBLAS thread) on the same matrices, shapes and caps.
    print("## Decomposition time per matrix (median over matrices of a shape, one core)\n")
    print("| cores | cap (budget) | shape | ckptkit (Eigen BDCSVD) ms | numpy (LAPACK gesdd) ms | ratio numpy/ckptkit |")
    print("|---:|---|---|---:|---:|---:|")
    r = ranks[len(ranks) // 2]
    for n in cores_list:
        # ckptkit: per-matrix best of `reps` runs (the first is the energy run above).
        ck_best = {x["name"]: x["decompose_seconds"] for x in reports[(n, r)]["tensors"]}
        for _ in range(a.reps - 1):
            rep_i, _, _ = run_ckptkit(a.bin, a.data, os.path.join(tmp, "t"), ["--cores", str(n), "--params-like-lora", str(r)])
            for x in rep_i["tensors"]:
                ck_best[x["name"]] = min(ck_best[x["name"]], x["decompose_seconds"])
        rep = reports[(n, r)]
        for sh in shapes:
            rows = [x for x in rep["tensors"] if tuple(weights[x["name"]].shape) == sh]
            ck_ms = [ck_best[x["name"]] * 1e3 for x in rows]
            np_ms = []
            for x in rows:
                w = weights[x["name"]]
                cap = x["bond_cap"]
                best = None
                for _ in range(a.reps):
                    t0 = time.perf_counter()
                    tt_matrix.tt_matrix(w, x["row_shape"], x["col_shape"], cap=cap)
                    dt = (time.perf_counter() - t0) * 1e3
                    best = dt if best is None else min(best, dt)
                np_ms.append(best)
            ck, nm = float(np.median(ck_ms)), float(np.median(np_ms))
            print("| %d | %d (r=%d) | %dx%d | %.2f | %.2f | %.2f |" % (n, rows[0]["bond_cap"], r, sh[0], sh[1], ck, nm, nm / ck))
    print()
    print("Commands:\n")
    for c in commands:
        print("    " + c.replace(tmp, "$TMP"))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
