"""Adversarial suite (docs/reliability.md, "Hostile inputs"): cases generated below, grouped by the
class of failure they try (writes outside the output, crafted manifests and indexes, regexes that
explode, pickles, numerics, files changing under a run). Every case runs ckptkit in its own
sandbox folder and asserts:
  - the exit code (0 for the positive controls, else 1 or 2 — never a signal or 3),
  - a failure prints exactly one line "ckptkit: error: ..." naming what it must,
  - nothing in the sandbox changed except the output path (inputs and bystanders hashed before
    and after), no temporary ".NAME.tmp-PID" is left,
  - wall time under 20 s and peak RSS under 1 GiB.
Prints the worst time and RSS; `python3 tests/cli/test_hostile.py -v` lists every case."""
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import cktest as ck  # noqa: E402

BIN = os.path.abspath(ck.BIN)
check = ck.Checks()
VERBOSE = "-v" in sys.argv
TIME_LIMIT, RSS_LIMIT = 20.0, 1 << 30


def tree_hash(root, skip):
    """path -> sha256 of every file under root, except under the paths in `skip`."""
    out = {}
    for dp, dns, fns in os.walk(root):
        dns[:] = [d for d in dns if os.path.join(dp, d) not in skip]
        for f in fns:
            p = os.path.join(dp, f)
            if p in skip:
                continue
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):  # a link is its target, not what it points at
                out[os.path.relpath(p, root)] = "link:" + os.readlink(p)
            elif not stat.S_ISREG(st.st_mode):  # a FIFO: reading it would block
                out[os.path.relpath(p, root)] = f"special:{stat.S_IFMT(st.st_mode)}"
            else:
                with open(p, "rb") as fh:
                    out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


class Suite:
    def __init__(self, base):
        self.base = base
        self.n = 0
        self.ok = 0
        self.worst_time = (0.0, "")
        self.worst_rss = (0, "")

    def case(self, name, build, args, code, needle=None, out="out", allowed=()):
        """build(sandbox) prepares the inputs; args run with cwd = sandbox; `out` (relative) is the
        only path allowed to change (plus `allowed`)."""
        self.n += 1
        box = os.path.join(self.base, f"case{self.n:03d}")
        os.makedirs(box)
        build(box)
        skip = {os.path.join(box, out)} | {os.path.join(box, a) for a in allowed}
        before = tree_hash(box, skip)
        # rusage per child: run through Popen + wait4 for the peak RSS of this process alone.
        t0 = time.time()
        quiet = [] if args[0] == "inspect" else ["-q"]
        # stdout is dropped and stderr goes to a file: a pipe could fill and block the child.
        with open(os.path.join(self.base, "stderr.txt"), "w+b") as errf:
            p = subprocess.Popen([BIN, *args, *quiet], cwd=box, stdout=subprocess.DEVNULL,
                                 stderr=errf)
            _, status, usage = os.wait4(p.pid, 0)
            elapsed = time.time() - t0
            errf.seek(0)
            err = errf.read().decode(errors="replace")
        rc = os.waitstatus_to_exitcode(status)
        rss = usage.ru_maxrss * 1024
        after = tree_hash(box, skip)
        leftovers = [f for f in os.listdir(box) if ".tmp-" in f or ".old-" in f]
        lines = err.strip().splitlines()
        ok = rc == code
        if code != 0:
            ok = ok and len(lines) == 1 and lines[0].startswith("ckptkit: error: ")
            ok = ok and (needle is None or needle in err)
        ok = ok and before == after and not leftovers and elapsed < TIME_LIMIT and rss < RSS_LIMIT
        if elapsed > self.worst_time[0]:
            self.worst_time = (elapsed, name)
        if rss > self.worst_rss[0]:
            self.worst_rss = (rss, name)
        changed = sorted(set(before.items()) ^ set(after.items()))
        what = (f"[{self.n:02d}] {name}: exit {rc} (want {code}), {elapsed:.2f}s, "
                f"{rss / 2**20:.0f} MiB" + (f", changed {changed[:2]}" if changed else "")
                + (f", left {leftovers}" if leftovers else "")
                + ("" if ok else f", stderr: {err.strip()[:300]}"))
        if VERBOSE or not ok:
            check(ok, what)
        self.ok += 1 if ok else 0
        return ok


# --- inputs ---------------------------------------------------------------------------------------

def sample(box, name="in"):
    shutil.copytree(ck.SAMPLE, os.path.join(box, name))


def small(box, name="in", scale=1.0, extra=None, model_type="llama"):
    rng = np.random.default_rng(1)
    d = os.path.join(box, name)
    os.makedirs(d)
    w = {f"model.layers.{i}.self_attn.q_proj.weight":
         (rng.standard_normal([64, 48]) * scale).astype(np.float32) for i in range(2)}
    if extra:
        w.update(extra)
    ck.write_safetensors(os.path.join(d, "model.safetensors"), w, {"format": "pt"})
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"model_type": model_type}, f)


def parts(box):
    small(box)
    for k in range(2):
        subprocess.run([BIN, "svd-init", "in", "-o", f"p{k}", "--rank", "2", "--shard", f"{k}/2",
                        "-q"], cwd=box, check=True)


def edit_manifest(box, part, fn):
    path = os.path.join(box, part, "ckptkit-part.json")
    with open(path) as f:
        m = json.load(f)
    fn(m)
    with open(path, "w") as f:
        json.dump(m, f)


def bystander(box, name="mine"):
    d = os.path.join(box, name)
    os.makedirs(d)
    with open(os.path.join(d, "notes.txt"), "w") as f:
        f.write("the user's own work\n")


# --- classes --------------------------------------------------------------------------------------

def report_and_force(s):
    commands = {
        "svd-init": ["svd-init", "in", "--rank", "2"],
        "quantize": ["quantize", "in", "--scheme", "nf4"],
        "convert": ["convert", "in"],
        "mpo-init": ["mpo-init", "in", "--cores", "2"],
        "lq-decompose": ["lq-decompose", "in", "--rank", "2"],
        "analyze-spectrum": ["analyze-spectrum", "in"],
        "merge": ["merge", "pissa"],
    }

    def setup(box):
        small(box)
        subprocess.run([BIN, "svd-init", "in", "-o", "pissa", "--rank", "2", "-q"], cwd=box,
                       check=True)

    for cmd, args in commands.items():
        target = "pissa/residual/model.safetensors" if cmd == "merge" else "in/model.safetensors"
        s.case(f"{cmd} --report onto an input", setup,
               [*args, "-o", "out", "--report", target], 2, "--report")
        s.case(f"{cmd} --force onto a foreign folder", lambda b: (setup(b), bystander(b, "out")),
               [*args, "-o", "out", "--force"], 2, "not a ckptkit output", out="none")
    s.case("--report onto an existing file without --force",
           lambda b: (setup(b), open(os.path.join(b, "r.json"), "w").write("{}")),
           ["convert", "in", "-o", "out", "--report", "r.json"], 2, "already exists")
    s.case("--report into a folder that does not exist", setup,
           ["convert", "in", "-o", "out", "--report", "nowhere/r.json"], 2, "does not exist")
    s.case("--report inside the output", setup,
           ["convert", "in", "-o", "out", "--report", "out/copy.json"], 2, "inside the output")
    s.case("--report is a directory, --force", lambda b: (setup(b), os.makedirs(os.path.join(b, "r"))),
           ["convert", "in", "-o", "out", "--report", "r", "--force"], 2, "not a regular file")
    s.case("-o . --force", setup, ["convert", "in", "-o", ".", "--force"], 2, None, out="none")
    s.case("-o .. --force (a parent of the input)", setup,
           ["convert", "in/model.safetensors", "-o", "in/..", "--force"], 2, None, out="none")
    s.case("--force onto the input's parent from inside", setup,
           ["convert", "model.safetensors", "-o", "..", "--force"], 2, None, out="none")
    s.case("--force onto an earlier ckptkit output (allowed)",
           lambda b: (setup(b), subprocess.run([BIN, "convert", "in", "-o", "out", "-q"], cwd=b,
                                               check=True)),
           ["convert", "in", "-o", "out", "--force"], 0)
    s.case("--force onto an empty folder (allowed)",
           lambda b: (setup(b), os.makedirs(os.path.join(b, "out"))),
           ["convert", "in", "-o", "out", "--force"], 0)
    s.case("--report with --force over an old report (allowed)",
           lambda b: (setup(b), open(os.path.join(b, "r.json"), "w").write("{}")),
           ["convert", "in", "-o", "out", "--report", "r.json", "--force"], 0, allowed=("r.json",))

    def stale(box):
        setup(box)
        os.makedirs(os.path.join(box, ".out.tmp-999999999"))
        with open(os.path.join(box, ".out.tmp-999999999", "half.safetensors"), "w") as f:
            f.write("x")
    # The stale folder of a dead run is removed: allowed to change, and must be gone after.
    s.case("a dead run's .out.tmp-PID is cleaned", stale, ["convert", "in", "-o", "out"], 0,
           allowed=(".out.tmp-999999999",))


def manifests(s):
    def mutate(fn):
        return lambda b: (parts(b), edit_manifest(b, "p0", fn), edit_manifest(b, "p1", fn))

    def set_writer(field, value):
        def f(m):
            for c in m["checkpoints"]:
                c["writer"][field] = value
        return f

    def set_dir(value):
        def f(m):
            for c in m["checkpoints"]:
                c["dir"] = value
        return f

    for bad in ("../../escaped", "/tmp/abs", "a/b", "", "..", "x\ny"):
        s.case(f"stitch: base_name {bad!r}", mutate(set_writer("base_name", bad)),
               ["stitch", "p0", "p1", "-o", "out"], 2, "base_name")
    for bad in ("../up", "/abs", "a/../../b", "", "./."):
        s.case(f"stitch: checkpoint dir {bad!r}", mutate(set_dir(bad)),
               ["stitch", "p0", "p1", "-o", "out"], 2, "checkpoint dir")
    for bad in ("../f.safetensors", "sub/f.safetensors", "/etc/passwd"):
        def f(m, bad=bad):
            for c in m["checkpoints"]:
                c["part_files"] = [bad]
        s.case(f"stitch: part file {bad!r}", mutate(f), ["stitch", "p0", "p1", "-o", "out"], 2,
               "part file")
    for field, value in (("plan", 3), ("writer", [])):
        def g(m, field=field, value=value):
            m["checkpoints"][0][field] = value
        s.case(f"stitch: '{field}' of the wrong type", mutate(g),
               ["stitch", "p0", "p1", "-o", "out"], 2, None)
    s.case("stitch: shape of the wrong type",
           mutate(lambda m: m["checkpoints"][0]["plan"][0].__setitem__("shape", ["x"])),
           ["stitch", "p0", "p1", "-o", "out"], 2, None)

    def index(name):
        def build(box):
            small(box)
            d = os.path.join(box, "in")
            os.rename(os.path.join(d, "model.safetensors"), os.path.join(d, "m1.safetensors"))
            h, _, _ = ck.read_raw(os.path.join(d, "m1.safetensors"))
            with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
                json.dump({"weight_map": {k: name for k in h}}, f)
        return build
    for bad in ("../m1.safetensors", "/etc/hostname", "sub/m1.safetensors"):
        s.case(f"index names shard {bad!r}", index(bad), ["inspect", "in"], 2, "shard name",
               out="none")


def regexes(s):
    long_name = "a" * 300_000 + ".weight"
    build = lambda b: small(b, extra={long_name: np.zeros([2, 2], np.float32)})  # noqa: E731
    for pattern in (".*", "(a|aa)*b", "(.*)*(.*)*(.*)*(.*)*Z", "(a*)*$"):
        s.case(f"--target {pattern!r} against a 300k-character name", build,
               ["inspect", "in", "--target", pattern], 0, out="none")
        everything = pattern == ".*"
        s.case(f"--exclude {pattern!r} against a 300k-character name", build,
               ["svd-init", "in", "-o", "out", "--rank", "1", "--exclude", pattern,
                "--target", "q_proj"], 2 if everything else 0,
               "matches no" if everything else None)
    s.case("--target with a backreference", small, ["inspect", "in", "--target", r"(a)\1"], 2,
           "not a valid regex", out="none")
    s.case("--target of 30,000 nested groups (valid: RE2 compiles it without recursion)", small,
           ["inspect", "in", "--target", "(" * 30000 + "q" + ")" * 30000], 0, out="none")

    def nested_key(box):
        small(box)
        subprocess.run([BIN, "svd-init", "in", "-o", "pissa", "--rank", "2", "-q"], cwd=box,
                       check=True)
        p = os.path.join(box, "pissa", "adapter", "adapter_config.json")
        with open(p) as f:
            c = json.load(f)
        c["rank_pattern"] = {"(" * 30000 + "x" + ")" * 30000: 4}
        with open(p, "w") as f:
            json.dump(c, f)
    s.case("rank_pattern key of 30,000 nested parentheses", nested_key, ["merge", "pissa", "-o", "out"],
           2, "rank_pattern")

    def exploding_key(box):
        nested_key(box)
        p = os.path.join(box, "pissa", "adapter", "adapter_config.json")
        with open(p) as f:
            c = json.load(f)
        c["rank_pattern"] = {"(l*a*)*0\\.x": 4}
        with open(p, "w") as f:
            json.dump(c, f)
    s.case("rank_pattern key that backtracks exponentially", exploding_key,
           ["merge", "pissa", "-o", "out"], 2, "rank_pattern")


def pickles(s):
    fix = os.path.join(ck.DATA, "torch-bin")
    for name, needle in (("evil.bin", "os system"), ("legacy.bin", "legacy")):
        s.case(f"torch: {name}", lambda b, name=name: shutil.copy(os.path.join(fix, name), b),
               ["convert", name, "-o", "out"], 2, needle)
    with open(os.path.join(fix, "tied.bin"), "rb") as f:
        tied = f.read()
    for cut in (10, 200, len(tied) - 30):
        s.case(f"torch: tied.bin cut at {cut}",
               lambda b, cut=cut: open(os.path.join(b, "m.bin"), "wb").write(tied[:cut]),
               ["convert", "m.bin", "-o", "out"], 2, "m.bin")


def numerics(s):
    s.case("randomized svd-init on weights x1e8 (finite result)",
           lambda b: small(b, scale=1e8), ["svd-init", "in", "-o", "out", "--rank", "4"], 0)
    s.case("svd-init --adapter-dtype f16 on weights x1e12", lambda b: small(b, scale=1e12),
           ["svd-init", "in", "-o", "out", "--rank", "4", "--adapter-dtype", "f16"], 1,
           "not finite")
    s.case("convert --dtype f16 of a value 1e5",
           lambda b: small(b, extra={"big.weight": np.full([2, 2], 1e5, np.float32)}),
           ["convert", "in", "-o", "out", "--dtype", "f16"], 2, "overflows F16")
    s.case("convert --dtype bf16 of 3.4e38 (fits: allowed)",
           lambda b: small(b, extra={"big.weight": np.full([2, 2], 3.3e38, np.float32)}),
           ["convert", "in", "-o", "out", "--dtype", "bf16"], 0)

    def zst(box):
        small(box)
        d = os.path.join(box, "in")
        # A weight file whose size is an exact multiple of 128 KiB, zstd-compressed.
        w = {"a.weight": np.zeros([(2 * 131072 - 128) // 4], np.float32)}
        ck.write_safetensors(os.path.join(d, "model.safetensors"), w, {"format": "pt"})
        size = os.path.getsize(os.path.join(d, "model.safetensors"))
        pad = (-size) % 131072
        w = {"a.weight": np.zeros([(2 * 131072 - 128 + pad) // 4], np.float32)}
        ck.write_safetensors(os.path.join(d, "model.safetensors"), w, {"format": "pt"})
        assert os.path.getsize(os.path.join(d, "model.safetensors")) % 131072 == 0
        subprocess.run(["zstd", "-q", "--rm", os.path.join(d, "model.safetensors")], check=True)
    s.case(".zst whose content is a multiple of 128 KiB", zst, ["inspect", "in"], 0, out="none")


def bombs(s):
    """Decompression bombs: refused by name before memory is spent (file_bytes' expansion cap)."""
    def zst_stream(box):
        # 200 MiB of zeros as a stream without a declared size: a ~7 KB file.
        subprocess.run("head -c 200M /dev/zero | zstd -q -19 -o m.safetensors.zst", shell=True,
                       cwd=box, check=True)
    s.case("zstd stream expanding 30000x (no declared size)", zst_stream,
           ["inspect", "m.safetensors.zst"], 2, "decompression bomb", out="none")

    def zst_frame(box):
        # A frame header declaring 900 GB (single segment, 8-byte content size) and an empty
        # last raw block.
        frame = (b"\x28\xb5\x2f\xfd" + bytes([0xE0]) + (900 * 10**9).to_bytes(8, "little")
                 + b"\x01\x00\x00")
        with open(os.path.join(box, "m.safetensors.zst"), "wb") as f:
            f.write(frame)
    s.case("zstd frame declaring 900 GB", zst_frame, ["inspect", "m.safetensors.zst"], 2,
           "m.safetensors.zst", out="none")

    def lossless(box, shape):
        small(box)
        subprocess.run([BIN, "quantize", "in", "-o", "z", "--scheme", "lossless", "-q"], cwd=box,
                       check=True)
        path = os.path.join(box, "z", "quantized", "model.ckptkit-lossless.safetensors")
        with open(path, "rb") as f:
            raw = f.read()
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + n])
        marker = json.loads(header["__metadata__"]["ckptkit.lossless"])
        for t in marker["tensors"].values():
            t["shape"] = shape
        header["__metadata__"]["ckptkit.lossless"] = json.dumps(marker)
        text = json.dumps(header).encode()
        text += b" " * ((8 - len(text) % 8) % 8)
        with open(path, "wb") as f:
            f.write(len(text).to_bytes(8, "little") + text + raw[8 + n:])
    s.case("lossless archive declaring 2 x 4 GiB", lambda b: lossless(b, [1 << 20, 1 << 10]),
           ["convert", "z", "-o", "out"], 2, "decompression bomb")
    s.case("lossless archive declaring 2 x 16 EiB (overflow)",
           lambda b: lossless(b, [1 << 62, 4]), ["convert", "z", "-o", "out"], 2, "z")

    def deep(box, where):
        small(box)
        nested = "[" * 100000 + "]" * 100000
        if where == "config":
            with open(os.path.join(box, "in", "config.json"), "w") as f:
                f.write('{"model_type": "llama", "x": ' + nested + "}")
        else:
            subprocess.run([BIN, "svd-init", "in", "-o", "pissa", "--rank", "2", "-q"], cwd=box,
                           check=True)
            path = os.path.join(box, "pissa", "adapter", "adapter_config.json")
            with open(path) as f:
                text = f.read()
            with open(path, "w") as f:
                f.write(text.replace('"r":', '"deep": ' + nested + ', "r":', 1))
    s.case("config.json nested 10^5 deep", lambda b: deep(b, "config"),
           ["svd-init", "in", "-o", "out", "--rank", "2"], 2, "nested deeper")
    s.case("adapter_config.json nested 10^5 deep", lambda b: deep(b, "adapter"),
           ["merge", "in", "pissa/adapter", "-o", "out"], 2, "nested deeper")

    def deep_manifest(box):
        parts(box)
        edit_manifest(box, "p1", lambda m: m.__setitem__("extra", [[[[]]]]))
        path = os.path.join(box, "p1", "ckptkit-part.json")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace("[[[[]]]]", "[" * 100000 + "]" * 100000))
    s.case("stitch: ckptkit-part.json nested 10^5 deep", deep_manifest,
           ["stitch", "p0", "p1", "-o", "out"], 2, "nested deeper")

    def fifo_in_part(box):
        parts(box)
        os.mkfifo(os.path.join(box, "p1", "notes.txt"))
        with open(os.path.join(box, "p0", "notes.txt"), "w") as f:
            f.write("x")
    s.case("stitch: a FIFO among a part's files", fifo_in_part,
           ["stitch", "p0", "p1", "-o", "out"], 2, "notes.txt")


def cli_errors(s):
    s.case("unknown flag", small, ["convert", "in", "-o", "out", "--frobnicate"], 2, None)
    s.case("--threads -1", small, ["convert", "in", "-o", "out", "--threads", "-1"], 2, None)
    s.case("missing input", small, ["convert", "nothing", "-o", "out"], 2, "nothing")
    s.case("config.json is a JSON array",
           lambda b: (small(b), open(os.path.join(b, "in", "config.json"), "w").write("[1, 2]")),
           ["svd-init", "in", "-o", "out", "--rank", "2"], 2, "config.json")


def odd_files(s):
    s.case("a FIFO named like a checkpoint", lambda b: os.mkfifo(os.path.join(b, "m.safetensors")),
           ["inspect", "m.safetensors"], 1, "not a regular file", out="none")

    def loop(box):
        os.symlink("b", os.path.join(box, "a"))
        os.symlink("a", os.path.join(box, "b"))
    s.case("a symlink loop as the input", loop, ["inspect", "a"], 2, "a", out="none")

    def odd_name(box):
        small(box)
        os.rename(os.path.join(box, "in"), os.path.join(box.encode(), b"in\xff").decode(
            errors="surrogateescape"))
    s.case("an input folder whose name is not UTF-8", odd_name,
           ["convert", "in\udcff", "-o", "out"], 0)

    def foreign(box):
        small(box)
        for f in ("tf_model.h5", "flax_model.msgpack"):
            with open(os.path.join(box, "in", f), "w") as fh:
                fh.write("other framework")
    s.case("tf_model.h5 / flax_model.msgpack beside the input (not copied)", foreign,
           ["convert", "in", "-o", "out"], 0)
    out = os.path.join(s.base, f"case{s.n:03d}", "out")
    check(not os.path.exists(os.path.join(out, "tf_model.h5")) and
          not os.path.exists(os.path.join(out, "flax_model.msgpack")),
          "other frameworks' weight files are not copied into the output")


def truncated_during_run(tmp):
    """An input truncated while it is mapped: exit 1 naming it, no output, no temporary left."""
    d = os.path.join(tmp, "trunc")
    os.makedirs(d)
    rng = np.random.default_rng(2)
    w = {f"layers.{i}.weight": rng.standard_normal([512, 512]).astype(np.float32) for i in range(48)}
    path = os.path.join(d, "in.safetensors")
    ck.write_safetensors(path, w, {"format": "pt"})
    p = subprocess.Popen([BIN, "svd-init", "in.safetensors", "-o", "out", "--rank", "8", "--threads",
                          "1", "--svd", "exact", "-q"], cwd=d, stderr=subprocess.PIPE)
    deadline = time.time() + 20
    while time.time() < deadline and not any(".out.tmp-" in f for f in os.listdir(d)):
        time.sleep(0.01)
    time.sleep(0.2)
    os.truncate(path, os.path.getsize(path) // 3)
    _, err = p.communicate(timeout=120)
    err = err.decode().strip()
    left = [f for f in os.listdir(d) if ".tmp-" in f]
    check(p.returncode == 1 and "in.safetensors" in err and "truncated" in err and
          not os.path.exists(os.path.join(d, "out")) and not left and len(err.splitlines()) == 1,
          f"input truncated during the run: exit {p.returncode}, '{err[:160]}', leftovers {left}")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        s = Suite(tmp)
        report_and_force(s)
        manifests(s)
        regexes(s)
        pickles(s)
        numerics(s)
        bombs(s)
        cli_errors(s)
        odd_files(s)
        check(s.n >= 60 and s.ok == s.n,
              f"adversarial suite: {s.ok} of {s.n} cases passed; worst time {s.worst_time[0]:.2f}s "
              f"({s.worst_time[1]}), worst peak RSS {s.worst_rss[0] / 2**20:.0f} MiB "
              f"({s.worst_rss[1]})")
        truncated_during_run(tmp)
    check.exit()


if __name__ == "__main__":
    main()
