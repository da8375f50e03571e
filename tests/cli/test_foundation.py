#!/usr/bin/python3
"""End-to-end checks of the foundation through the ckptkit binary: inspect (table and --json),
corrupt inputs (exit 2, one stderr line naming the file and tensor), convert round trips over every
.safetensors in ../shared/data (byte-identical tensor data and __metadata__, also resharded and
zstd-compressed), --threads 1 vs 2 byte-identical, output refusal rules, and SIGINT cleanup.

Env: CKPTKIT_BIN, CKPTKIT_DATA, CKPTKIT_SHARED (optional: the round trip over shared data is
skipped with a message when absent)."""
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

import cktest
from cktest import BIN, SHARED, SAMPLE, Checks, read_raw, write_safetensors

check = Checks()


def run(*args, **kw):
    return subprocess.run([BIN, *args], capture_output=True, text=True, **kw)


def read_checkpoint(d):
    """name -> (dtype, shape, bytes) over every weight file of a directory, plus the metadata."""
    tensors, metas = {}, []
    for f in sorted(os.listdir(d)):
        if ".safetensors" not in f or f.endswith(".index.json"):
            continue
        header, meta, data = read_raw(os.path.join(d, f))
        metas.append(meta)
        for name, e in header.items():
            b, en = e["data_offsets"]
            assert name not in tensors, name
            tensors[name] = (e["dtype"], e["shape"], data[b:en])
    return tensors, metas


def raw_file(path, header_text, data_len, header_len=None):
    h = header_text.encode() if isinstance(header_text, str) else header_text
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h) if header_len is None else header_len) + h + bytes(data_len))


# --- inspect --------------------------------------------------------------------------------------
def test_inspect():
    r = run("inspect", SAMPLE)
    check(r.returncode == 0, f"inspect {SAMPLE} exits 0 (got {r.returncode})")
    check("verdict: valid" in r.stdout, "inspect table ends with a valid verdict")
    check("model.decoder.layers.5.fc2.weight" in r.stdout, "inspect table lists the last fc2")
    r = run("inspect", SAMPLE, "--json")
    try:
        j = json.loads(r.stdout)
    except json.JSONDecodeError as e:
        check(False, f"inspect --json is valid JSON ({e})")
        return
    tot = j["totals"]
    print(f"     inspect --json: {tot['tensors']} tensors, {tot['params']} params, {tot['bytes']} bytes, "
          f"{j['targets']['tensors']} targets")
    check(tot["tensors"] == 101, f"101 tensors (got {tot['tensors']})")
    check(tot["params"] == 10893312, f"10,893,312 params (got {tot['params']})")
    check(tot["bytes"] == 2 * 10893312, f"bf16: 2 bytes per param (got {tot['bytes']})")
    check(tot["by_dtype"].get("BF16", {}).get("tensors") == 101, "all 101 tensors BF16")
    # 6 layers x (q, k, v, out_proj, fc1, fc2); embeddings and lm_head left out by default.
    check(j["targets"]["tensors"] == 36, f"36 default targets (got {j['targets']['tensors']})")
    check(j["valid"] is True and len(j["shards"]) == 1, "valid, one shard")
    header, _, _ = read_raw(os.path.join(SAMPLE, "model.safetensors"))
    check(sorted(t["name"] for t in j["tensors"]) == sorted(header), "same names as the file's header")


# --- corrupt inputs -------------------------------------------------------------------------------
def test_corrupt(tmp):
    good = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    cases = []  # (label, path, tensor or None)

    def add(label, name, header, data_len, tensor=None, header_len=None):
        p = os.path.join(tmp, name)
        raw_file(p, header, data_len, header_len)
        cases.append((label, p, tensor))

    add("truncated data", "trunc.safetensors", good, 5, "a")
    add("header length past EOF", "hlen.safetensors", good, 8, None, header_len=10_000)
    add("huge header length", "huge.safetensors", good, 8, None, header_len=1 << 60)
    add("invalid JSON", "json.safetensors", '{"a":', 0)
    add("unknown dtype", "dtype.safetensors", '{"w.weight":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}', 8,
        "w.weight")
    add("negative shape", "neg.safetensors", '{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', 8, "w")
    add("overlap", "overlap.safetensors",
        '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}',
        6, "b")
    add("duplicate names", "dup.safetensors",
        '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}',
        8, "a")
    add("newline in a tensor name", "nl.safetensors", '{"x\\ny":{"dtype":"Q","shape":[1],"data_offsets":[0,1]}}', 1,
        "x\\x0ay")
    p = os.path.join(tmp, "empty.safetensors")
    open(p, "wb").close()
    cases.append(("empty file", p, None))
    p = os.path.join(tmp, "bad.safetensors.zst")
    with open(p, "wb") as f:
        f.write(b"\x28\xb5\x2f\xfd garbage")
    cases.append(("bad zstd", p, None))
    # Index naming a missing shard.
    d = os.path.join(tmp, "idx")
    os.makedirs(d)
    raw_file(os.path.join(d, "model-00001-of-00002.safetensors"), good, 8)
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"weight_map": {"a": "model-00001-of-00002.safetensors",
                                  "b": "model-00002-of-00002.safetensors"}}, f)
    cases.append(("index naming a missing shard", d, None))
    d2 = os.path.join(tmp, "noweights")
    os.makedirs(d2)
    with open(os.path.join(d2, "config.json"), "w") as f:
        f.write("{}")
    cases.append(("directory without weights", d2, None))

    for label, path, tensor in cases:
        for cmd in (["inspect", path], ["convert", path, "-o", os.path.join(tmp, "never")]):
            r = run(*cmd)
            lines = r.stderr.strip("\n").split("\n")
            named = os.path.basename(path) in r.stderr and (tensor is None or f"tensor '{tensor}'" in r.stderr)
            check(r.returncode == 2 and len(lines) == 1 and named and r.stdout == "",
                  f"{cmd[0]} {label}: exit {r.returncode}, {len(lines)} stderr line: {lines[0][:110]}")
    check(not os.path.exists(os.path.join(tmp, "never")), "no output left by failed converts")
    print(f"     {len(cases)} corrupt inputs x 2 subcommands")


# --- convert round trips --------------------------------------------------------------------------
def same_checkpoint(a_dir, b_dir, label):
    a, am = read_checkpoint(a_dir)
    b, bm = read_checkpoint(b_dir)
    same = a.keys() == b.keys() and all(a[k] == b[k] for k in a)
    nbytes = sum(len(v[2]) for v in a.values())
    check(same, f"{label}: {len(b)} tensors, {nbytes} bytes of tensor data identical")
    check(all(m == am[0] for m in bm), f"{label}: __metadata__ identical in {len(bm)} file(s) ({len(am[0] or {})} keys)")


def test_round_trip(tmp):
    inputs = [os.path.join(SAMPLE, "model.safetensors")]
    shared = os.path.join(SHARED, "data")
    if os.path.isdir(shared):
        for root, _, files in sorted(os.walk(shared)):
            inputs += [os.path.join(root, f) for f in sorted(files) if f.endswith(".safetensors")]
    else:
        cktest.skip(f"round trip over shared data: {shared} is absent (only the bundled sample)")
    for i, src in enumerate(inputs):
        src_dir = os.path.join(tmp, f"src{i}")
        os.makedirs(src_dir)
        shutil.copy(src, os.path.join(src_dir, "model.safetensors"))
        label = os.path.relpath(src, os.path.dirname(os.path.dirname(os.path.dirname(src))))
        # Shard limits relative to the file, so that every input (a 0.4 MB adapter as well as a
        # 20 MB model) is split into several shards.
        size = os.path.getsize(src)
        third, half = str(max(size // 3, 1)), str(max(size // 2, 1))
        for tag, extra in (("copy", []), ("reshard thirds", ["--max-shard-size", third]),
                           ("zstd", ["--zstd"]), ("reshard+zstd", ["--zstd", "--max-shard-size", half])):
            out = os.path.join(tmp, f"out{i}-{tag.replace(' ', '_').replace('+', '_')}")
            r = run("convert", src, "-o", out, "--quiet", *extra)
            check(r.returncode == 0, f"convert {label} ({tag}) exits 0 {r.stderr.strip()[:200]}")
            if r.returncode:
                continue
            if tag.startswith("reshard"):
                n = len([f for f in os.listdir(os.path.join(out, "model"))
                         if ".safetensors" in f and not f.endswith(".json")])
                check(n > 1 and os.path.exists(os.path.join(out, "model", "model.safetensors.index.json")),
                      f"{label} {tag}: {n} shards and an index")
            same_checkpoint(src_dir, os.path.join(out, "model"), f"{label} {tag}")
            if tag == "reshard+zstd":
                # And back: the compressed, sharded output is itself a valid input.
                back = out + "-back"
                r = run("convert", out, "-o", back, "--quiet")
                check(r.returncode == 0, f"{label}: zstd shards read back ({r.stderr.strip()[:200]})")
                same_checkpoint(src_dir, os.path.join(back, "model"), f"{label} zstd shards -> plain")
            shutil.rmtree(out)


def test_threads(tmp):
    outs = []
    for t in (1, 2):
        for mode, extra in (("reshard", ["--max-shard-size", "3MB"]), ("cast", ["--dtype", "f16"])):
            out = os.path.join(tmp, f"threads{t}-{mode}")
            r = run("convert", SAMPLE, "-o", out, "--threads", str(t), "--quiet", *extra)
            check(r.returncode == 0, f"convert --threads {t} {mode} exits 0")
            outs.append((t, mode, out))
    for mode in ("reshard", "cast"):
        a = os.path.join(next(o for t, m, o in outs if t == 1 and m == mode), "model")
        b = os.path.join(next(o for t, m, o in outs if t == 2 and m == mode), "model")
        fa, fb = sorted(os.listdir(a)), sorted(os.listdir(b))
        same = fa == fb and all(open(os.path.join(a, f), "rb").read() == open(os.path.join(b, f), "rb").read()
                                for f in fa)
        check(same, f"--threads 1 and 2 ({mode}): {len(fa)} files byte-identical")


def test_output_rules(tmp):
    out = os.path.join(tmp, "exists")
    check(run("convert", SAMPLE, "-o", out, "--quiet").returncode == 0, "first convert writes the output")
    marker = os.path.join(out, "marker")
    open(marker, "w").close()
    r = run("convert", SAMPLE, "-o", out, "--quiet")
    check(r.returncode == 2 and "--force" in r.stderr and os.path.exists(marker),
          f"existing output refused with exit 2, untouched ({r.stderr.strip()})")
    r = run("convert", SAMPLE, "-o", out, "--quiet", "--force")
    check(r.returncode == 0 and not os.path.exists(marker), "--force replaces it")
    src = os.path.join(tmp, "in")
    shutil.copytree(SAMPLE, src)
    for target in (src, os.path.join(src, "sub"), tmp):
        r = run("convert", src, "-o", target, "--force", "--quiet")
        check(r.returncode == 2 and "input" in r.stderr and len(r.stderr.strip().split("\n")) == 1,
              f"output {os.path.relpath(target, tmp)} vs input in/: refused ({r.stderr.strip()[:120]})")
    check(sorted(os.listdir(src)) == sorted(os.listdir(SAMPLE)), "the input is untouched")
    r = run("convert", SAMPLE, "-o", os.path.join(tmp, "x"), "--max-shard-size", "lots")
    check(r.returncode == 2, f"bad --max-shard-size: exit 2 ({r.stderr.strip()[:100]})")


# --- SIGINT ---------------------------------------------------------------------------------------
def test_sigint(tmp):
    rng = np.random.default_rng(0)
    for attempt, mb in enumerate((200, 600, 1500)):
        src = os.path.join(tmp, f"big{attempt}")
        os.makedirs(src)
        n = mb // 4  # tensors of 1M f32 = 4 MB
        block = rng.standard_normal(1 << 20).astype(np.float32)
        write_safetensors(os.path.join(src, "model.safetensors"),
                          {f"layers.{i}.weight": np.roll(block, i).reshape(1024, 1024) for i in range(n)},
                          {"format": "pt"})
        out = os.path.join(tmp, f"sigout{attempt}")
        # --dtype f16 --threads 1 makes every tensor real work, so the run lasts long enough.
        p = subprocess.Popen([BIN, "convert", src, "-o", out, "--dtype", "f16", "--threads", "1", "--quiet"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        tmp_prefix = f".sigout{attempt}.tmp-{p.pid}"
        deadline = time.time() + 30
        while time.time() < deadline and p.poll() is None and not os.path.exists(os.path.join(tmp, tmp_prefix)):
            time.sleep(0.005)
        started = os.path.exists(os.path.join(tmp, tmp_prefix))
        time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
        shutil.rmtree(src)
        if p.returncode == 0:
            print(f"     {mb} MB finished before SIGINT arrived; retrying bigger")
            shutil.rmtree(out, ignore_errors=True)
            continue
        left = [f for f in os.listdir(tmp) if f.startswith(f".sigout{attempt}") or f == f"sigout{attempt}"]
        check(started, f"SIGINT sent after the temporary output existed ({mb} MB input)")
        check(p.returncode == 130, f"SIGINT: exit code 130 (got {p.returncode}; {err.strip()[:120]})")
        check(not left, f"SIGINT: no output or temporary directory left ({left})")
        check(len(err.strip().split("\n")) == 1 and "interrupt" in err, f"SIGINT: one stderr line: {err.strip()}")
        return
    check(False, "SIGINT: every run finished before the signal")


def main():
    if not os.path.exists(BIN):
        print(f"FAIL: no binary at {BIN}")
        sys.exit(1)
    with tempfile.TemporaryDirectory(prefix="ckptkit-cli-foundation-") as tmp:
        for name, f in (("inspect", test_inspect), ("corrupt", test_corrupt), ("round trip", test_round_trip),
                        ("threads", test_threads), ("output rules", test_output_rules), ("sigint", test_sigint)):
            print(f"== {name}")
            d = os.path.join(tmp, name.replace(" ", "_"))
            os.makedirs(d)
            f(d) if f is not test_inspect else f()
    check.exit()


if __name__ == "__main__":
    main()
