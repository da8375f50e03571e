#!/usr/bin/python3
"""Benchmark driver: ckptkit analyze-spectrum vs the numpy peer (peer_numpy.py) on the same
checkpoint(s), same matrices and metrics. Runs each command REPS times (after one warm-up), prints
a Markdown table of median wall time, median CPU time (user+sys of the child) and the ratio.

  bench/spectrum/run.py CKPTKIT_BIN BASE [FT] [--reps 5] [--one-thread]
"""
import argparse, json, os, resource, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))


def timed(cmd, env=None):
    env = {**os.environ, **(env or {})}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def bench_all(cmds, reps):
    """Runs every command once per round (interleaved, so that a change of machine load hits all
    tools alike), after one warm-up round. Returns {name: {wall, cpu, walls}} with medians."""
    for _, cmd, env in cmds:
        timed(cmd, env)
    res = {name: {"walls": [], "cpus": []} for name, _, _ in cmds}
    for _ in range(reps):
        for name, cmd, env in cmds:
            w, c = timed(cmd, env)
            res[name]["walls"].append(w)
            res[name]["cpus"].append(c)
    return {n: {"name": n, "wall": statistics.median(r["walls"]), "cpu": statistics.median(r["cpus"]),
                "walls": r["walls"]} for n, r in res.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("base")
    ap.add_argument("ft", nargs="?")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--one-thread", action="store_true",
                    help="like for like: ckptkit --threads 1, numpy with OPENBLAS/OMP_NUM_THREADS=1")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-spectrum-")
    peer = [sys.executable, os.path.join(HERE, "peer_numpy.py")]
    ours = ["--threads", "1"] if a.one_thread else []
    one = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"} if a.one_thread else {}
    rows = []
    cmds = [("ckptkit analyze-spectrum", [a.bin, "analyze-spectrum", a.base, "-o", f"{tmp}/o", "--force", "-q", *ours], {}),
            ("numpy svd f64 + metrics", peer + [a.base], one),
            ("numpy svd f32 + metrics", peer + [a.base, "--dtype", "f32"], one)]
    r = bench_all(cmds, a.reps)
    rows.append(("spectrum", r[cmds[0][0]], [r[cmds[1][0]], r[cmds[2][0]]]))
    if a.ft:
        cmds = [("ckptkit analyze-spectrum --compare",
                 [a.bin, "analyze-spectrum", a.base, "--compare", a.ft, "-o", f"{tmp}/c", "--force", "-q", *ours], {}),
                ("numpy full svd f64 + drift", peer + [a.base, "--compare", a.ft], one),
                ("numpy full svd f32 + drift", peer + [a.base, "--compare", a.ft, "--dtype", "f32"], one)]
        r = bench_all(cmds, a.reps)
        rows.append(("compare", r[cmds[0][0]], [r[cmds[1][0]], r[cmds[2][0]]]))
    load = os.getloadavg()
    print(f"{'one thread each' if a.one_thread else 'default threads'}, reps {a.reps} (+1 warm-up), {os.cpu_count()} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}\n")
    print("| mode | tool | median wall s | median CPU s | wall ratio (peer / ckptkit) | CPU ratio |")
    print("|---|---|---:|---:|---:|---:|")
    for mode, ck, peers in rows:
        print(f"| {mode} | {ck['name']} | {ck['wall']:.3f} | {ck['cpu']:.3f} | 1 | 1 |")
        for p in peers:
            print(f"| {mode} | {p['name']} | {p['wall']:.3f} | {p['cpu']:.3f} | {p['wall'] / ck['wall']:.2f} | {p['cpu'] / ck['cpu']:.2f} |")
    print("\nall wall times: " + json.dumps({r['name']: [round(x, 3) for x in r['walls']] for _, c, ps in rows for r in [c] + ps}))


if __name__ == "__main__":
    main()
