#!/usr/bin/env python3
"""Benchmark `ckptkit quantize` (docs/bench-quantize.md).

1. NF4 + bnb double quantization throughput, in GB/s of bf16 input, on a synthetic bf16
   checkpoint, against (a) memcpy bandwidth measured in the same run (numpy copyto of the same
   number of bytes), (b) a numpy reference quantizer (same rules: blockwise absmax, midpoint
   search over the NF4 table, high-nibble-first packing, mean offset + dynamic-map double quant),
   (c) the same reference in PyTorch when `import torch` works; and the quantizer alone in memory
   against memcpy in its own process (build/bench/ckptkit-quant-throughput, when built), on one
   thread and on all. ckptkit runs once per SIMD path (--simd: every path `ckptkit --version`
   lists, by default; CKPTKIT_SIMD pins each), and the outputs of all paths must be identical.
2. Lossless archives: ratio and MB/s both ways on a bf16 and an f32 checkpoint against plain
   `zstd -3` and `zstd -19` of the same file.
Every figure is the median of --runs runs (default 3); the whole-command figures come from --runs
rounds of memcpy then every path once, so the shared machine's slow spells fall on all of them.

Usage: /usr/bin/python3 bench/quantize/bench_quantize.py [--bin build/ckptkit] [--mb 128] [--runs 3]
"""
import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
                0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=np.float32)
MIDS = ((NF4[:-1] + NF4[1:]) * np.float32(0.5)).astype(np.float32)


def dynamic_map():
    data = []
    for i in range(7):
        b = np.linspace(0.1, 1, 2 ** i + 1, dtype=np.float32)
        m = (b[:-1] + b[1:]) / np.float32(2)
        data += list(np.float32(10.0 ** (-6 + i)) * m) + list(-np.float32(10.0 ** (-6 + i)) * m)
    return np.sort(np.array(data + [0.0, 1.0], dtype=np.float32))


DYN = dynamic_map()
DYN_MIDS = ((DYN[:-1] + DYN[1:]) * np.float32(0.5)).astype(np.float32)


def numpy_nf4(w_bf16_bits, block=64):
    x = (w_bf16_bits.astype(np.uint32) << 16).view(np.float32).reshape(-1, block)
    absmax = np.abs(x).max(axis=1)
    inv = np.where(absmax > 0, np.float32(1) / np.where(absmax > 0, absmax, 1), 0).astype(np.float32)
    codes = np.searchsorted(MIDS, x * inv[:, None], side="left").astype(np.uint8).reshape(-1)
    packed = (codes[0::2] << 4) | codes[1::2]
    offset = absmax.mean(dtype=np.float64).astype(np.float32)
    d = (absmax - offset).reshape(-1, 256)
    nested = np.abs(d).max(axis=1)
    q = np.searchsorted(DYN_MIDS, d / nested[:, None], side="left").astype(np.uint8)
    return packed, q, nested, offset


def torch_nf4(torch, w, block=64):
    x = w.float().reshape(-1, block)
    absmax = x.abs().amax(dim=1)
    codes = torch.bucketize(x / absmax[:, None], torch.from_numpy(MIDS)).to(torch.uint8).reshape(-1)
    packed = (codes[0::2] << 4) | codes[1::2]
    offset = absmax.mean()
    d = (absmax - offset).reshape(-1, 256)
    nested = d.abs().amax(dim=1)
    q = torch.bucketize(d / nested[:, None], torch.from_numpy(DYN_MIDS)).to(torch.uint8)
    return packed, q, nested, offset


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


def timed(cmd, env=None, cpu=None):
    """Wall seconds and stdout of `cmd`; appends its CPU seconds (user + system) to `cpu`."""
    import resource
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if cpu is not None:
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr}")
    return dt, p.stdout


def median_of(runs, fn):
    return statistics.median(fn() for _ in range(runs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("CKPTKIT_BIN", "build/ckptkit"))
    ap.add_argument("--mb", type=int, default=128, help="synthetic bf16 checkpoint size (MiB)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--bf16", default="data/bytegpt-base-bf16/model.safetensors")
    ap.add_argument("--f32", default="../shared/data/bytegpt-base/model.safetensors")
    ap.add_argument("--only", choices=["nf4", "lossless"], help="run one half of the benchmark")
    ap.add_argument("--throughput-bin", help="ckptkit-quant-throughput (default: bench/ beside --bin)")
    ap.add_argument("--simd", default="all", help="SIMD paths to run, comma-separated, or 'all'")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ckpt-bench-quant-")
    res = {"runs": a.runs, "cpus": os.cpu_count()}
    try:
        if a.only != "lossless":
            nf4_part(a, tmp, res)
        if a.only != "nf4":
            lossless_part(a, tmp, res)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(res, indent=2))


def nf4_part(a, tmp, res):
    if True:
        # ---- synthetic bf16 checkpoint: --mb MiB of 2048 x 4096 Gaussian weights
        rows, cols = 2048, 4096
        n_t = max(1, a.mb * 2 ** 20 // (rows * cols * 2))
        rng = np.random.default_rng(0)
        tensors = {}
        for i in range(n_t):
            w = (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02)
            bits = ((w.view(np.uint32).astype(np.uint64) + 0x7FFF + ((w.view(np.uint32) >> 16) & 1)) >> 16).astype(np.uint16)
            tensors[f"model.layers.{i}.mlp.up_proj.weight"] = ("BF16", (rows, cols), bits.tobytes())
        synth = os.path.join(tmp, "synth")
        os.makedirs(synth)
        write_safetensors(os.path.join(synth, "model.safetensors"), tensors)
        nbytes = n_t * rows * cols * 2
        res["nf4_input_bytes"] = nbytes

        src = np.frombuffer(tensors[next(iter(tensors))][2] * n_t, dtype=np.uint8)
        dst = np.empty_like(src)
        np.copyto(dst, src)

        def memcpy():
            t = time.perf_counter()
            np.copyto(dst, src)
            return time.perf_counter() - t

        thr = ["--threads", str(a.threads)] if a.threads else []
        res["ckptkit_nf4_cmd"] = f"{a.bin} quantize SYNTH -o OUT --scheme nf4 --double-quant bnb"
        res["simd_available"] = simd_paths(a.bin)
        paths = res["simd_available"] if a.simd == "all" else a.simd.split(",")
        # Rounds: each runs memcpy, then the command once per path, so a slow spell of the machine
        # (it is shared) lands on every path and on memcpy alike instead of on one path's runs.
        copies = []
        wall = {p: [] for p in paths}
        cpu = {p: [] for p in paths}
        kernel = {p: [] for p in paths}  # seconds of quantization work summed over tensors
        for _ in range(a.runs):
            copies.append(memcpy())
            for path in paths:
                out = os.path.join(tmp, "nf4-" + path)
                shutil.rmtree(out, ignore_errors=True)
                dt, so = timed([a.bin, "quantize", synth, "-o", out, "--scheme", "nf4", "--double-quant", "bnb",
                                "--json", *thr], env=dict(os.environ, CKPTKIT_SIMD=path), cpu=cpu[path])
                wall[path].append(dt)
                kernel[path].append(json.loads(so)["totals"]["quantize_seconds"])
        res["memcpy_gbps"] = nbytes / statistics.median(copies) / 1e9
        res["paths"] = {}
        digests = {}
        for path in paths:
            r = {"whole_command_gbps": nbytes / statistics.median(wall[path]) / 1e9,
                 "whole_command_gbps_range": [nbytes / max(wall[path]) / 1e9, nbytes / min(wall[path]) / 1e9]}
            r["whole_command_cpu_s"] = statistics.median(cpu[path])
            # The per-tensor work alone (decode, quantize, double quant, error metrics, layout), per
            # thread: what one core sustains once the input is mapped and the heap is warm.
            r["kernel_gbps_per_thread"] = nbytes / statistics.median(kernel[path]) / 1e9
            r["whole_command_percent_of_memcpy"] = 100 * r["whole_command_gbps"] / res["memcpy_gbps"]
            r["in_memory"] = in_memory(a, dict(os.environ, CKPTKIT_SIMD=path))
            digests[path] = tree_digest(os.path.join(tmp, "nf4-" + path))
            res["paths"][path] = r
        res["outputs_identical_across_paths"] = len(set(digests.values())) == 1

        one = np.frombuffer(tensors[next(iter(tensors))][2], dtype=np.uint16)

        def np_ref():
            t = time.perf_counter()
            numpy_nf4(one)
            return time.perf_counter() - t
        res["numpy_nf4_gbps"] = one.nbytes / median_of(a.runs, np_ref) / 1e9
        try:
            import torch
            torch.set_num_threads(os.cpu_count())
            tw = torch.from_numpy(one.astype(np.int16)).view(torch.bfloat16)

            def th_ref():
                t = time.perf_counter()
                torch_nf4(torch, tw)
                return time.perf_counter() - t
            res["torch_nf4_gbps"] = one.nbytes / median_of(a.runs, th_ref) / 1e9
            res["torch_version"] = torch.__version__
        except Exception as e:  # noqa: BLE001
            res["torch_nf4_gbps"] = None
            res["torch_error"] = str(e)


def simd_paths(binary):
    """The SIMD paths `ckptkit --version` lists as available, scalar first."""
    text = subprocess.run([binary, "--version"], check=True, capture_output=True, text=True).stdout
    return text.split("available: ")[1].split(")")[0].split(", ")


def tree_digest(root):
    """sha256 over every file of an output tree but report.json (it holds timings)."""
    import hashlib
    h = hashlib.sha256()
    for dp, _, fs in sorted(os.walk(root)):
        for f in sorted(fs):
            if f != "report.json":
                h.update(f.encode())
                with open(os.path.join(dp, f), "rb") as fh:
                    h.update(fh.read())
    return h.hexdigest()


def in_memory(a, env):
    """The quantizer alone, in memory, against memcpy in the same process (no file I/O, no
    process start), on one thread and on --threads (all cores by default):
    bench/quant_throughput.cpp, when it was built."""
    exe = a.throughput_bin or os.path.join(os.path.dirname(a.bin), "bench", "ckptkit-quant-throughput")
    if not os.path.exists(exe):
        return None
    out = {}
    for label, t in (("one_thread", 1), ("all_threads", a.threads)):
        cmd = [exe, "--mb", str(a.mb), "--runs", str(max(a.runs, 5)), "--threads", str(t)]
        out[label] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout)
    return out


def lossless_part(a, tmp, res):
    thr = ["--threads", str(a.threads)] if a.threads else []
    if True:
        for label, path in (("bf16", a.bf16), ("f32", a.f32)):
            if not os.path.exists(path):
                res[f"lossless_{label}"] = None
                continue
            size = os.path.getsize(path)
            arc, back = os.path.join(tmp, "arc"), os.path.join(tmp, "back")

            def enc():
                shutil.rmtree(arc, ignore_errors=True)
                return timed([a.bin, "quantize", path, "-o", arc, "--scheme", "lossless", "-q", *thr])[0]

            def dec():
                shutil.rmtree(back, ignore_errors=True)
                return timed([a.bin, "quantize", arc, "--dequantize", "-o", back, "-q", *thr])[0]
            t_enc = median_of(a.runs, enc)
            t_dec = median_of(a.runs, dec)
            arc_size = os.path.getsize(os.path.join(arc, "quantized", "model.ckptkit-lossless.safetensors"))
            r = {"file": path, "bytes": size, "ckptkit_ratio": size / arc_size,
                 "ckptkit_comp_mbps": size / t_enc / 1e6, "ckptkit_decomp_mbps": size / t_dec / 1e6}
            for lvl in (3, 19):
                z = os.path.join(tmp, f"z{lvl}.zst")

                def zc():
                    return timed(["zstd", f"-{lvl}", "-T0", "-q", "-f", path, "-o", z])[0]

                def zd():
                    return timed(["zstd", "-d", "-q", "-f", z, "-o", os.path.join(tmp, "zd.bin")])[0]
                tc = median_of(a.runs if lvl == 3 else 1, zc)
                td = median_of(a.runs, zd)
                r[f"zstd{lvl}_ratio"] = size / os.path.getsize(z)
                r[f"zstd{lvl}_comp_mbps"] = size / tc / 1e6
                r[f"zstd{lvl}_decomp_mbps"] = size / td / 1e6
            res[f"lossless_{label}"] = r


if __name__ == "__main__":
    main()
