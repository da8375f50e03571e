#!/usr/bin/env python3
"""Outputs chain (issue #22, item 2; io/output_layout.hpp): every command that reads a checkpoint
or an adapter takes a ckptkit output root as it is and picks its part — residual/ or quantized/
where a checkpoint is wanted, adapter/ where an adapter is — and gives the same bytes as when the
part is named. An output holding only an adapter, given where a checkpoint is wanted, is a
one-line error saying so."""
import json
import os
import shutil
import tempfile

import cktest

C = cktest.Checks()


def run(*args):
    p = cktest.run(*args)
    return p.returncode, p.stderr.strip()


def main():
    s = os.path.abspath(cktest.SAMPLE)
    with tempfile.TemporaryDirectory() as t:
        o = lambda *p: os.path.join(t, *p)  # noqa: E731
        for args in (["svd-init", s, "--rank", "4", "-o", o("pissa")],
                     ["lq-decompose", s, "--rank", "4", "-o", o("lq")],
                     ["mpo-init", s, "--bond", "4", "-o", o("mpo")],
                     ["svd-init", o("pissa"), "--base", s, "--rank", "2", "-o", o("extracted")]):
            rc, err = run(*args)
            C(rc == 0, f"{args[0]} -o {os.path.basename(args[-1])}: exit {rc} {err}")
        p = cktest.run("inspect", o("pissa"), quiet=False)
        C(p.returncode == 0 and p.stdout.startswith(o("pissa", "residual")),
          f"inspect OUT reads OUT/residual: {p.stdout.splitlines()[:1]}")
        pairs = [
            ("merge OUT (svd-init root alone)", ["merge", o("pissa"), "-o", o("m1")],
             ["merge", o("pissa", "residual"), o("pissa", "adapter"), "-o", o("m1n")]),
            ("merge RESIDUAL OUT", ["merge", o("pissa", "residual"), o("pissa"), "-o", o("m2")],
             ["merge", o("pissa", "residual"), o("pissa", "adapter"), "-o", o("m2n")]),
            ("merge OUT (lq-decompose root alone: quantized/ + adapter/)",
             ["merge", o("lq"), "-o", o("m3")],
             ["merge", o("lq", "quantized"), o("lq", "adapter"), "-o", o("m3n")]),
            ("merge BASE OUT (mpo-init root)", ["merge", s, o("mpo"), "-o", o("m4")],
             ["merge", s, o("mpo", "adapter"), "-o", o("m4n")]),
            ("merge BASE OUT (extraction root: adapter/ only)",
             ["merge", s, o("extracted"), "-o", o("m5")],
             ["merge", s, o("extracted", "adapter"), "-o", o("m5n")]),
            # (the initial adapter as its own "trained" one: a chaining check, not a conversion)
            ("merge --to-lora OUT OUT", ["merge", "--to-lora", o("pissa"), o("pissa"), "-o",
                                         o("m6")],
             ["merge", "--to-lora", o("pissa", "adapter"), o("pissa", "adapter"), "-o",
              o("m6n")]),
            ("analyze-spectrum BASE --adapter OUT",
             ["analyze-spectrum", s, "--adapter", o("pissa"), "-o", o("a1")],
             ["analyze-spectrum", s, "--adapter", o("pissa", "adapter"), "-o", o("a1n")]),
            ("convert OUT (residual)", ["convert", o("pissa"), "-o", o("c1")],
             ["convert", o("pissa", "residual"), "-o", o("c1n")]),
        ]
        for what, root, named in pairs:
            rc1, e1 = run(*root)
            rc2, e2 = run(*named)
            diff = cktest.same_files(root[-1], named[-1], skip=("report.json", "report.html"))
            C(rc1 == 0 and rc2 == 0 and diff == [],
              f"{what}: exit {rc1} ({e1[:100]}), same bytes as naming the part (differ {diff[:3]})")
        # What outputs carry: the files that load or license the model, not the input's model
        # card, scripts or tables; base_model_name_or_path is absolute when it is a local path.
        src = o("with-files")
        shutil.copytree(s, src)
        for name in ("tokenizer.json", "LICENSE", "README.md", "train.py", "tensors.json"):
            with open(os.path.join(src, name), "w") as f:
                f.write("{}\n")
        for cmd in (["quantize", src, "--scheme", "nf4", "-o", o("q-files")],
                    ["svd-init", src, "--rank", "2", "-o", o("p-files")]):
            rc, err = run(*cmd)
            d = o("q-files", "quantized") if cmd[0] == "quantize" else o("p-files", "residual")
            have = sorted(f for f in os.listdir(d) if not f.endswith(".safetensors")
                          and f != "report.json" and not f.startswith("."))
            C(rc == 0 and have == ["LICENSE", "PROVENANCE.md", "config.json", "tokenizer.json"],
              f"{cmd[0]} output carries {have} (not README.md, train.py, tensors.json)")
        cwd_rel = os.path.relpath(src)
        rc, err = run("svd-init", cwd_rel, "--rank", "2", "-o", o("p-rel"))
        with open(o("p-rel", "adapter", "adapter_config.json")) as f:
            bm = json.load(f)["base_model_name_or_path"]
        C(rc == 0 and bm == os.path.abspath(src),
          f"base_model_name_or_path of a relative input is absolute: {bm}")
        C(os.path.isfile(o("m6", "adapter", "adapter_config.json")) and
          os.path.isfile(o("m6", "report.json")),
          "merge --to-lora writes OUT/adapter/ beside OUT/report.json, as svd-init does")
        # A lossless archive does not take transformers' weight names; convert restores them.
        rc, err = run("quantize", s, "--scheme", "lossless", "-o", o("zip"))
        rc2, err2 = run("convert", o("zip"), "-o", o("unzip"))
        names = sorted(f for f in os.listdir(o("zip", "quantized")) if "safetensors" in f)
        with open(o("unzip", "model", "model.safetensors"), "rb") as a, \
                open(os.path.join(s, "model.safetensors"), "rb") as b:
            same = a.read() == b.read()
        C(rc == 0 and rc2 == 0 and names == ["model.ckptkit-lossless.safetensors"] and same,
          f"lossless archive files {names}; convert restores model.safetensors bit for bit")
        rc, err = run("convert", o("extracted"), "-o", o("c2"))
        C(rc == 2 and "holds an adapter (adapter/) and no checkpoint" in err
          and len(err.splitlines()) == 1, f"convert of an adapter-only output: exit {rc}, {err!r}")
    C.exit()


main()
