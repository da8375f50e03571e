#!/usr/bin/env python3
"""Progress on a terminal (issue #22, item 4; core/progress.hpp): run under a pseudo-terminal, a
command that takes a few seconds redraws one line in place with its phase, percent, a clock that
ticks while a tensor computes, rate and ETA once work is done, and the tensor in work; Ctrl-C shows
"stopping" on that line at once, then the one error line. With stderr not a terminal: nothing but
the summary."""
import os
import pty
import re
import select
import signal
import subprocess
import tempfile
import time

import numpy as np

import cktest

C = cktest.Checks()
BIN = os.path.abspath(cktest.BIN)


def under_pty(args, cwd, interrupt_after=None, timeout=120):
    """Runs ckptkit with stderr on a pty; returns (exit code, what the terminal received)."""
    master, slave = pty.openpty()
    p = subprocess.Popen([BIN, *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    out, t0, sent = b"", time.time(), False
    while True:
        if interrupt_after is not None and not sent and time.time() - t0 > interrupt_after:
            p.send_signal(signal.SIGINT)
            sent = True
        r, _, _ = select.select([master], [], [], 0.1)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                chunk = b""
            if not chunk and p.poll() is not None:
                break
            out += chunk
        elif p.poll() is not None:
            break
        if time.time() - t0 > timeout:
            p.kill()
            break
    # What the child wrote between the last select and its exit is still in the pty.
    while select.select([master], [], [], 0.2)[0]:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return p.wait(), out.decode(errors="replace")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(3)
        w = {f"model.layers.{i}.mlp.up_proj.weight": rng.standard_normal([1536, 1536]).astype(
            np.float32) for i in range(4)}
        cktest.write_safetensors(os.path.join(tmp, "m.safetensors"), w, {"format": "pt"})
        args = ["svd-init", "m.safetensors", "--rank", "8", "--svd", "exact", "--threads", "1"]
        rc, text = under_pty(args + ["-o", "out"], tmp)
        frames = [f for f in text.split("\r\x1b[K") if f.strip()]
        clocks = sorted({m for f in frames for m in re.findall(r"  (\d+:\d\d)(?:  |$)", f)})
        C(rc == 0 and len(frames) >= 4, f"{len(frames)} redraws of one line (exit {rc})")
        C(any(f.startswith("svd-init [") and "%" in f for f in frames), "phase, bar and percent")
        C(len(clocks) >= 2, f"the clock ticks while tensors compute: {clocks[:6]}")
        C(any("ETA " in f and "B/s" in f for f in frames), "rate and ETA once a tensor is done: " +
          next((f.strip()[:100] for f in frames if "ETA" in f), "none"))
        C(any("model.layers." in f for f in frames), "the tensor in work is named")
        rc, text = under_pty(args + ["-o", "out2"], tmp, interrupt_after=1.0)
        C(rc == 130 and "stopping (interrupted" in text and
          "ckptkit: error: interrupted by signal 2" in text,
          f"Ctrl-C: 'stopping' on the progress line, then the error line (exit {rc}): {text[-300:]!r}")
        p = subprocess.run([BIN, *args, "-o", "out3"], cwd=tmp, capture_output=True, text=True)
        C(p.returncode == 0 and p.stderr == "", f"stderr not a terminal: no progress "
                                                f"({len(p.stderr)} bytes on stderr)")
    C.exit()


main()
