#!/usr/bin/env python3
"""The command line's edges (issue #22, items 3 and 5): a mistyped command or flag gets one line
with the nearest name; so does a --target naming no module (or naming a tensor), a quantized
checkpoint given to svd-init, and `merge ADAPTER BASE` swapped; `ckptkit help CMD` is `CMD --help`; -V prints the version; --threads out of
range is refused in words; --threads above the core count runs quietly; `-o a/b/c` creates the
missing folders (and a failed run removes them again); `-o out/` names the folder out."""
import json
import os
import shutil
import subprocess
import tempfile

import cktest

C = cktest.Checks()


def ck(*args, cwd=None, env=None):
    return subprocess.run([os.path.abspath(cktest.BIN), *args], capture_output=True, text=True,
                          cwd=cwd, env=env)


def one_error(p, code, needle, what):
    lines = p.stderr.strip().splitlines()
    return C(p.returncode == code and len(lines) == 1 and lines[0].startswith("ckptkit: error: ")
             and needle in lines[0], f"{what}: exit {p.returncode}, {lines[:1]}")


def main():
    sample = os.path.abspath(cktest.SAMPLE)
    one_error(ck("svd-int"), 2, "did you mean 'svd-init'", "mistyped command")
    one_error(ck("quantise"), 2, "did you mean 'quantize'", "British spelling")
    one_error(ck(), 2, "no command given; commands: svd-init", "no command")
    one_error(ck("help", "nothing"), 2, "no command 'nothing'", "help of an unknown command")
    p = ck("help", "svd-init")
    C(p.returncode == 0 and "--rank" in p.stdout and "Usage" in p.stdout,
      f"help svd-init prints svd-init's help (exit {p.returncode}, {len(p.stdout)} chars)")
    p = ck("-V")
    C(p.returncode == 0 and p.stdout.startswith("ckptkit ") and "simd: " in p.stdout
      and "available: scalar" in p.stdout, f"-V: {p.stdout.strip()!r}")
    # CKPTKIT_SIMD: pins the kernels' path; a word it does not know is a usage error before any work.
    scalar = ck("-V", env=dict(os.environ, CKPTKIT_SIMD="scalar"))
    C(scalar.returncode == 0 and "simd: scalar (" in scalar.stdout, f"CKPTKIT_SIMD=scalar -V: {scalar.stdout!r}")
    bad_env = dict(os.environ, CKPTKIT_SIMD="avx1024")
    one_error(ck("inspect", sample, env=bad_env), 2, "CKPTKIT_SIMD=avx1024: not a SIMD path",
              "CKPTKIT_SIMD=avx1024")
    one_error(ck("svd-init", sample, "-o", "x", "--ranks", "8"), 2,
              "unknown flag '--ranks' for 'svd-init' (did you mean '--rank'?)", "--ranks")
    one_error(ck("quantize", sample, "-o", "x", "--shceme=nf4"), 2,
              "did you mean '--scheme'?", "--shceme=nf4")
    one_error(ck("convert", sample, "-o", "x", "--threads", "-1"), 2,
              "'-1' is not a thread count", "--threads -1")
    one_error(ck("svd-init", sample, "-o", "x", "--target", "q_prj"), 2,
              "did you mean 'q_proj'? (modules here end in: ", "--target q_prj")
    one_error(ck("svd-init", sample, "-o", "x", "--target", "model.decoder.layers.0.fc1.weight"),
              2, "--target names modules, not tensors: 'model.decoder.layers.0.fc1'",
              "--target naming a tensor")
    with tempfile.TemporaryDirectory() as tmp:
        ck("quantize", sample, "--scheme", "nf4", "-o", "nf4", "-q", cwd=tmp)
        # svd-init reads quantized checkpoints (test_quantized_pissa.py); mpo-init does not.
        one_error(ck("mpo-init", "nf4", "-o", "x", cwd=tmp), 2,
                  "a quantized checkpoint; dequantize it first", "mpo-init of an nf4 checkpoint")
        ck("svd-init", sample, "--rank", "2", "-o", "pissa", "-q", cwd=tmp)
        with open(os.path.join(tmp, "pissa", "report.json")) as f:
            rep = json.load(f)
        C(rep["totals"]["energy_target_met"] is None and
          all(r["energy_target_met"] is None for r in rep["tensors"]),
          "svd-init without --energy: energy_target_met is null (no target), not true")
        one_error(ck("merge", "pissa/adapter", sample, "-o", "m", cwd=tmp), 2,
                  "merge takes the base checkpoint first", "merge ADAPTER BASE")
    with tempfile.TemporaryDirectory() as tmp:
        # One vocabulary: NF4 as papers write it, --block on mpo-init too, and --base meaning
        # "the model this one was fine-tuned from" in analyze-spectrum as in svd-init.
        a = ck("quantize", sample, "--scheme", "NF4", "-o", "upper", "-q", cwd=tmp)
        b = ck("quantize", sample, "--scheme", "nf4", "-o", "lower", "-q", cwd=tmp)
        C(a.returncode == 0 and b.returncode == 0 and
          cktest.same_files(os.path.join(tmp, "upper"), os.path.join(tmp, "lower")) == [],
          "--scheme NF4 is nf4 (same bytes)")
        p = ck("mpo-init", sample, "--bond", "4", "--quantize-residual", "nf4", "--block", "128",
               "-o", "mpo", "-q", cwd=tmp)
        C(p.returncode == 0, f"mpo-init --block (exit {p.returncode} {p.stderr.strip()[:80]})")
        ft = os.path.abspath(cktest.shared_path("bytegpt-ft") or sample)
        a = ck("analyze-spectrum", sample, "--compare", ft, "-o", "cmp", "-q", cwd=tmp)
        b = ck("analyze-spectrum", ft, "--base", sample, "-o", "base", "-q", cwd=tmp)
        diff = cktest.same_files(os.path.join(tmp, "cmp"), os.path.join(tmp, "base"),
                                 skip=("report.json", "report.html"))
        C(a.returncode == 0 and b.returncode == 0 and diff == [],
          f"analyze-spectrum FT --base BASE == BASE --compare FT (differ {diff[:3]})")
    with tempfile.TemporaryDirectory() as tmp:
        # Limits hit and useless defaults say so in the summary (item 8).
        p = ck("lq-decompose", sample, "--rank", "8", "-o", "lq10", cwd=tmp)
        q = ck("lq-decompose", sample, "--rank", "8", "--max-iter", "40", "-o", "lq40", cwd=tmp)
        C(p.returncode == 0 and "still improving" in p.stdout and "still improving" not in q.stdout,
          "lq-decompose warns when --max-iter cut matrices short, not when it did not: " +
          next((l for l in p.stdout.splitlines() if l.startswith("warning")), "none"))
        p = ck("mpo-init", sample, "-o", "mpo-exact", cwd=tmp)
        q = ck("mpo-init", sample, "--bond", "4", "-o", "mpo-bond", cwd=tmp)
        C(p.returncode == 0 and "warning: no size given" in p.stdout and
          "warning" not in q.stdout, "mpo-init without a size warns; with --bond it does not")
        acts = cktest.shared_path("bytegpt-activations")
        if acts:
            p = ck("velora-init", os.path.abspath(acts), "--groups", "8", "-o", "ve", cwd=tmp)
            C(p.returncode == 0 and "verdict: the vectors keep" in p.stdout and
              "what a random direction keeps" in p.stdout,
              "velora-init ends with a verdict: " +
              next((l for l in p.stdout.splitlines() if l.startswith("verdict")), "none"))
    with tempfile.TemporaryDirectory() as tmp:
        p = ck("convert", sample, "-o", "many", "--threads", str(4 * (os.cpu_count() or 1)), "-q",
               cwd=tmp)
        C(p.returncode == 0 and p.stderr == "",
          f"--threads 4x the cores: exit {p.returncode}, stderr {p.stderr.strip()[:80]!r}")
        p = ck("svd-init", sample, "--rank", "4", "-o", "runs/a/pissa", "-q", cwd=tmp)
        C(p.returncode == 0 and os.path.isdir(os.path.join(tmp, "runs/a/pissa/adapter")),
          f"-o runs/a/pissa creates runs/a (exit {p.returncode}, {p.stderr.strip()[:80]})")
        p = ck("svd-init", sample, "--rank", "4", "-o", "slash/", "-q", cwd=tmp)
        C(p.returncode == 0 and os.path.isdir(os.path.join(tmp, "slash/adapter")),
          f"-o slash/ writes the folder slash (exit {p.returncode}, {p.stderr.strip()[:80]})")
        p = ck("svd-init", sample, "--rank", "99999", "-o", "failed/b/c", "-q", cwd=tmp)
        C(p.returncode == 2 and not os.path.exists(os.path.join(tmp, "failed")),
          f"a failed run removes the folders it created (exit {p.returncode}, "
          f"left: {os.path.exists(os.path.join(tmp, 'failed'))})")
        os.makedirs(os.path.join(tmp, "kept"))
        p = ck("svd-init", sample, "--rank", "99999", "-o", "kept/new/c", "-q", cwd=tmp)
        C(p.returncode == 2 and os.path.isdir(os.path.join(tmp, "kept")) and
          not os.path.exists(os.path.join(tmp, "kept/new")),
          "... and only those: a folder that existed stays")
    C.exit()


main()
