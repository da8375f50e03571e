#!/usr/bin/python3
"""numpy peer of `ckptkit analyze-spectrum`: the same singular values and metrics on the same
matrices (2-D *.weight tensors except embeddings / lm_head, the ckptkit default targets).

  peer_numpy.py CKPT_DIR [--compare FT_DIR] [--dtype f64|f32] [--out values.json]

Spectrum: np.linalg.svd(W, compute_uv=False) (LAPACK gesdd via OpenBLAS, multi-threaded), then
the WeightWatcher metrics: norms, stable rank, entropy, energy ranks, condition number, alpha by
WWFit (Hill MLE per xmin, KS distance, vectorised over the tail per xmin as WW does), MP spikes.
Compare: full SVDs with vectors of W and W_ft, values of dW, principal angles, intruders (k=10,
eps=0.5, left vectors), SORSA dSigma / dD.
Prints one JSON line: {"seconds": ..., "matrices": n}; --out writes the per-matrix values.
"""
import argparse, json, os, struct, sys, time
import numpy as np


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = data[b:e]
        if info["dtype"] == "F32":
            a = np.frombuffer(raw, dtype=np.float32)
        elif info["dtype"] == "BF16":
            a = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] == "F16":
            a = np.frombuffer(raw, dtype=np.float16).astype(np.float32)
        else:
            continue
        out[name] = a.reshape(info["shape"])
    return out


def is_target(name, a):
    if a.ndim != 2 or not name.endswith(".weight"):
        return False
    mod = name[: -len(".weight")]
    last = mod.split(".")[-1]
    return not any(k in last for k in ("embed", "wte", "wpe", "lm_head")) and last not in ("embed_tokens", "embed_positions")


def ww_fit(evals):
    """WeightWatcher WWFit: returns alpha, xmin, D."""
    data = np.sort(evals[evals > 0])
    N = len(data)
    if N < 10:
        return None
    log_data = np.log(data)
    alphas = np.zeros(N - 1)
    Ds = np.ones(N - 1)
    for i, xmin in enumerate(data[:-1]):
        n = float(N - i)
        alpha = 1 + n / (np.sum(log_data[i:]) - n * log_data[i])
        alphas[i] = alpha
        if alpha > 1:
            Ds[i] = np.max(np.abs(1 - (data[i:] / xmin) ** (-alpha + 1) - np.arange(n) / n))
    i = int(np.argmin(Ds))
    return float(alphas[i]), float(data[i]), float(Ds[i])


def energy_rank(s, q):
    e = np.cumsum(s * s)
    return int(np.searchsorted(e, q * e[-1] * (1 - 1e-12)) + 1) if e[-1] > 0 else 0


def mp_spikes(s, m, n):
    N, M = max(m, n), min(m, n)
    edge = (np.sqrt(N) + np.sqrt(M)) ** 2
    tw = (np.sqrt(N) + np.sqrt(M)) * np.cbrt(1 / np.sqrt(N) + 1 / np.sqrt(M))
    spikes = 0
    for _ in range(50):
        bulk = s[spikes:]
        s2 = np.sum(bulk * bulk) / len(bulk) / N
        nxt = int(np.sum(s * s > s2 * edge + s2 * tw))
        if nxt == spikes:
            break
        spikes = nxt
    return spikes


def metrics(s, m, n):
    s2 = s * s
    tot = s2.sum()
    p1 = s / s.sum()
    p2 = s2 / tot
    fit = ww_fit(s2[s2 > s2[0] * 1e-14])
    return {
        "spectral_norm": float(s[0]),
        "frobenius_norm": float(np.sqrt(tot)),
        "stable_rank": float(tot / s2[0]),
        "effective_rank": float(np.exp(-np.sum(p1[p1 > 0] * np.log(p1[p1 > 0])))),
        "entropy": float(-np.sum(p2[p2 > 0] * np.log(p2[p2 > 0])) / np.log(len(s))),
        "energy_rank50": energy_rank(s, 0.5),
        "energy_rank90": energy_rank(s, 0.9),
        "energy_rank99": energy_rank(s, 0.99),
        "condition_number": float(s[0] / s[-1]) if s[-1] > 0 else float("inf"),
        "alpha": fit[0] if fit else None,
        "alpha_xmin": fit[1] if fit else None,
        "mp_spikes": mp_spikes(s, m, n),
    }


def principal_angles(A, B):
    c = np.linalg.svd(A.T @ B, compute_uv=False)
    return np.degrees(np.arccos(np.clip(c, 0, 1)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("--compare")
    ap.add_argument("--dtype", default="f64", choices=["f64", "f32"])
    ap.add_argument("--out")
    a = ap.parse_args()
    t0 = time.perf_counter()
    path = lambda d: os.path.join(d, "model.safetensors") if os.path.isdir(d) else d
    base = load_safetensors(path(a.ckpt))
    ft = load_safetensors(path(a.compare)) if a.compare else None
    dt = np.float64 if a.dtype == "f64" else np.float32
    res = {}
    for name, W in base.items():
        if not is_target(name, W):
            continue
        m, n = W.shape
        W = W.astype(dt)
        if ft is None:
            s = np.linalg.svd(W, compute_uv=False).astype(np.float64)
            r = metrics(s, m, n)
        else:
            Wt = ft[name].astype(dt)
            U0, s0, V0t = np.linalg.svd(W, full_matrices=False)
            Ut, st, Vtt = np.linalg.svd(Wt, full_matrices=False)
            sd = np.linalg.svd(Wt - W, compute_uv=False)
            r = metrics(s0.astype(np.float64), m, n)
            rt = metrics(st.astype(np.float64), m, n)
            k = min(16, len(s0))
            best = np.abs(Ut[:, :10].T @ U0).max(axis=1)
            r.update({
                "rel_delta_fro": float(np.linalg.norm(sd) / np.linalg.norm(s0)),
                "delta_rank90": energy_rank(sd.astype(np.float64), 0.9),
                "angle_left_max_deg": float(principal_angles(U0[:, :k], Ut[:, :k]).max()),
                "intruders": int(np.sum(best < 0.5)),
                "sorsa_dsigma": float(np.mean(np.abs(st - s0))),
                "sorsa_dd": float(1 - 0.5 * (np.mean(np.abs(np.sum(U0 * Ut, axis=0))) + np.mean(np.abs(np.sum(V0t * Vtt, axis=1))))),
                "delta_alpha": (rt["alpha"] - r["alpha"]) if (rt["alpha"] and r["alpha"]) else 0.0,
            })
            s = s0
        r["sigma"] = [float(x) for x in s]
        res[name] = r
    secs = time.perf_counter() - t0
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f)
    print(json.dumps({"seconds": secs, "matrices": len(res), "dtype": a.dtype}))


if __name__ == "__main__":
    main()
