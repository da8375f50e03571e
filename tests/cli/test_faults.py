#!/usr/bin/python3
"""Faults: what ckptkit leaves behind when it is interrupted or its environment fails.

- SIGINT and SIGTERM mid-run (svd-init --svd exact on a synthetic 16-matrix checkpoint, signalled
  once its temporary output exists): exit 130, one-line message, no output directory and no
  temporary sibling left, input bytes unchanged (sha256 before/after).
- Disk full, two ways: a 1 MiB tmpfs mounted for the test (needs root/CAP_SYS_ADMIN; skipped with a
  message where mount is refused), and RLIMIT_FSIZE (write() fails with EFBIG, SIGXFSZ ignored;
  runs everywhere). Both must give exit 1, a one-line error naming the file, no partial output.
- Read-only output location, permission denied on the input, missing input, output inside the
  input: exit codes per design.md (1 I/O, 2 usage/invalid input). Running as root makes chmod
  powerless, so those cases drop to user 'nobody' (setuid in the child) when run as root.
"""
import hashlib
import os
import pwd
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

import cktest

check = cktest.Checks()
BIN = os.path.abspath(cktest.BIN)
SAMPLE = os.path.abspath(cktest.SAMPLE)


def sha256_tree(path):
    h = hashlib.sha256()
    for dp, dns, fs in sorted(os.walk(path)):
        dns.sort()
        for f in sorted(fs):
            p = os.path.join(dp, f)
            h.update(os.path.relpath(p, path).encode())
            with open(p, "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()


def leftovers(parent, name):
    """The output and any temporary sibling of it ('.NAME.tmp-PID', '.NAME.old-PID')."""
    return sorted(e for e in os.listdir(parent) if e == name or e.startswith("." + name + "."))


def one_line(stderr):
    lines = [l for l in stderr.splitlines() if l.strip()]
    return len(lines) == 1, (lines[0] if lines else "")


def make_big_input(d, n=12, size=768):
    """A Llama-like checkpoint of n f32 [size, size] matrices (exact SVD takes a while on each); the
    first is 2560 x 2560, whose exact SVD runs for seconds inside Eigen where no check can poll."""
    rng = np.random.default_rng(7)
    arrays = {f"model.layers.{i}.mlp.up_proj.weight": rng.standard_normal((size, size), np.float32)
              for i in range(n)}
    arrays["model.layers.0.mlp.up_proj.weight"] = rng.standard_normal((2560, 2560), np.float32)
    os.makedirs(d)
    cktest.write_safetensors(os.path.join(d, "model.safetensors"), arrays)
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write('{"model_type": "llama"}\n')


def interrupted_run(tmp, src, sig):
    """Starts svd-init, waits for its temporary output, sends `sig`, returns (rc, stderr, secs)."""
    out = os.path.join(tmp, "out-" + signal.Signals(sig).name)
    cmd = [BIN, "svd-init", src, "-o", out, "--rank", "8", "--svd", "exact", "--threads", "1", "-q"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    name = os.path.basename(out)
    deadline = time.time() + 60
    while time.time() < deadline and p.poll() is None:
        if any(e.startswith("." + name + ".tmp-") for e in os.listdir(tmp)):
            break
        time.sleep(0.01)
    time.sleep(0.3)  # well inside the first tensors' SVDs
    still_running = p.poll() is None
    t0 = time.time()
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    return p.returncode, err, time.time() - t0, still_running, out


def as_nobody():
    """preexec_fn dropping to 'nobody' when running as root (else None)."""
    if os.geteuid() != 0:
        return None
    pw = pwd.getpwnam("nobody")

    def drop():
        os.setgroups([])
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    return drop


def run_cmd(args, preexec=None, binary=BIN):
    return subprocess.run([binary, *args, "-q"], capture_output=True, text=True, preexec_fn=preexec)


def reachable_copies(tmp):
    """The binary and the sample copied under `tmp` (mode 0755), where 'nobody' can reach them:
    the clone itself may sit in a folder only its owner can enter (e.g. `mktemp -d`)."""
    d = os.path.join(tmp, "for-nobody")
    os.makedirs(d)
    binary = os.path.join(d, "ckptkit")
    shutil.copy2(BIN, binary)
    os.chmod(binary, 0o755)
    sample = shutil.copytree(SAMPLE, os.path.join(d, "sample"))
    for dp, dns, fns in os.walk(d):
        for n in dns:
            os.chmod(os.path.join(dp, n), 0o755)
        for n in fns:
            os.chmod(os.path.join(dp, n), 0o755 if n == "ckptkit" else 0o644)
    return binary, sample


def expect_failure(what, p, code, needle, parent=None, name=None):
    ok_line, line = one_line(p.stderr)
    check(p.returncode == code, f"{what}: exit {p.returncode} (want {code})")
    check(ok_line and needle.lower() in line.lower(),
          f"{what}: one-line error mentioning '{needle}': {line!r}")
    if parent is not None:
        left = leftovers(parent, name)
        check(not left, f"{what}: nothing left in {parent}: {left}")


def signals(tmp):
    src = os.path.join(tmp, "big")
    make_big_input(src)
    before = sha256_tree(src)
    for sig in (signal.SIGINT, signal.SIGTERM):
        rc, err, secs, running, out = interrupted_run(tmp, src, sig)
        tag = signal.Signals(sig).name
        if not running:
            check(False, f"{tag}: svd-init finished before the signal (input too small for this machine?)")
            continue
        ok_line, line = one_line(err)
        check(rc == 130, f"{tag}: exit {rc} (want 130), stopped {secs:.2f} s after the signal")
        check(ok_line and "interrupt" in line.lower(), f"{tag}: one-line message: {line!r}")
        left = leftovers(tmp, os.path.basename(out))
        check(not left, f"{tag}: no output and no temporary sibling left: {left}")
        # The watchdog's grace is 0.75 s (core/interrupt.hpp); 2 s leaves room for a busy machine.
        check(secs < 2, f"{tag}: stopped within 2 s of the signal, in a long SVD ({secs:.2f} s)")
    after = sha256_tree(src)
    check(before == after, f"signals: input unchanged (sha256 {before[:16]}… before, {after[:16]}… after)")


def disk_full_tmpfs(tmp):
    mnt = os.path.join(tmp, "tiny")
    os.makedirs(mnt)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt], capture_output=True, text=True)
    if r.returncode != 0:
        cktest.skip(f"disk full on a 1 MiB tmpfs: mount refused ({r.stderr.strip()}); "
              "the RLIMIT_FSIZE case below covers the same code path")
        return
    try:
        before = sha256_tree(SAMPLE)
        p = run_cmd(["convert", SAMPLE, "-o", os.path.join(mnt, "out"), "--dtype", "f32"])
        expect_failure("disk full (1 MiB tmpfs, convert to f32)", p, 1, "no space left", mnt, "out")
        check(os.listdir(mnt) == [], f"disk full: tmpfs empty afterwards: {os.listdir(mnt)}")
        check(sha256_tree(SAMPLE) == before, "disk full: input unchanged")
        # And the same subcommand writing many files (svd-init: base + adapter).
        p = run_cmd(["svd-init", SAMPLE, "-o", os.path.join(mnt, "out2"), "--rank", "4"])
        expect_failure("disk full (1 MiB tmpfs, svd-init)", p, 1, "no space left", mnt, "out2")
    finally:
        subprocess.run(["umount", mnt], capture_output=True)


def disk_full_rlimit(tmp):
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    out = os.path.join(tmp, "fsize-out")
    p = subprocess.run([BIN, "convert", SAMPLE, "-o", out, "--dtype", "f32", "-q"],
                       capture_output=True, text=True, preexec_fn=limit)
    expect_failure("file size limit (RLIMIT_FSIZE 1 MiB, convert)", p, 1, "too large", tmp, "fsize-out")


def permissions(tmp):
    drop = as_nobody()
    who = "as nobody" if drop else "as this user"
    binary, sample = reachable_copies(tmp) if drop else (BIN, SAMPLE)
    # Read-only output location.
    ro = os.path.join(tmp, "readonly")
    os.makedirs(ro)
    os.chmod(ro, 0o555)
    p = run_cmd(["convert", sample, "-o", os.path.join(ro, "out")], drop, binary)
    expect_failure(f"read-only output location ({who})", p, 1, "permission denied", ro, "out")
    # Permission denied on the input file (output location writable by that user).
    src = os.path.join(tmp, "secret")
    os.makedirs(src)
    shutil.copy(os.path.join(sample, "model.safetensors"), src)
    os.chmod(os.path.join(src, "model.safetensors"), 0o000)
    wr = os.path.join(tmp, "writable")
    os.makedirs(wr)
    os.chmod(wr, 0o777)
    p = run_cmd(["convert", os.path.join(src, "model.safetensors"), "-o", os.path.join(wr, "out")], drop,
                binary)
    if drop is None and p.returncode == 0:
        cktest.skip("permission denied: chmod 000 did not stop this user from reading")
    else:
        expect_failure(f"permission denied on the input ({who})", p, 1, "permission denied", wr, "out")
        check("model.safetensors" in p.stderr, "permission denied: the message names the file")
    if os.geteuid() == 0:
        ro_mnt = os.path.join(tmp, "ro-mnt")
        os.makedirs(ro_mnt)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", ro_mnt], capture_output=True)
        if r.returncode == 0:
            try:
                p = run_cmd(["convert", SAMPLE, "-o", os.path.join(ro_mnt, "out")])
                expect_failure("read-only file system (ro tmpfs, root)", p, 1, "read-only file system")
            finally:
                subprocess.run(["umount", ro_mnt], capture_output=True)


def usage_errors(tmp):
    p = run_cmd(["convert", os.path.join(tmp, "does-not-exist"), "-o", os.path.join(tmp, "o1")])
    expect_failure("missing input", p, 2, "no such file", tmp, "o1")
    copy = os.path.join(tmp, "copy")
    shutil.copytree(SAMPLE, copy)
    before = sha256_tree(copy)
    p = run_cmd(["convert", copy, "-o", os.path.join(copy, "inside")])
    expect_failure("output inside the input", p, 2, "inside the input")
    p = run_cmd(["convert", copy, "-o", copy, "--force"])
    expect_failure("output is the input (--force)", p, 2, "input")
    check(sha256_tree(copy) == before, "output-inside-input: input unchanged")


def main():
    tmp = tempfile.mkdtemp(prefix="ckptkit-faults-")
    os.chmod(tmp, 0o755)  # 'nobody' must reach the directories below
    try:
        signals(tmp)
        disk_full_tmpfs(tmp)
        disk_full_rlimit(tmp)
        permissions(tmp)
        usage_errors(tmp)
    finally:
        for dp, dns, _ in os.walk(tmp):
            for d in dns:
                os.chmod(os.path.join(dp, d), 0o755)
        shutil.rmtree(tmp, ignore_errors=True)
    check.exit()


if __name__ == "__main__":
    main()
