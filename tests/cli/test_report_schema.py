"""Every command's report.json (and inspect --json) against docs/report-schema.md: the envelope
fields and their types, schema_version 1, a `name` in every row naming a real tensor, one name
for the relative error (`rel_error`), and totals.seconds. Runs each command once on the bundled sample (small targets, seconds each)."""
import json
import os
import shutil
import subprocess
import tempfile

import cktest
from cktest import BIN, SAMPLE, Checks

check = Checks()
ENVELOPE = {"tool": str, "version": str, "schema_version": int, "command": str, "argv": list,
            "inputs": list, "settings": dict, "tensors": list, "totals": dict}


def tensor_names(path):
    return set(cktest.read_checkpoint(path).keys())


def validate(label, rep, names):
    for field, typ in ENVELOPE.items():
        check(isinstance(rep.get(field), typ), f"{label}: {field} is a {typ.__name__}")
    check(rep.get("tool") == "ckptkit" and rep.get("schema_version") == 1,
          f"{label}: tool ckptkit, schema_version 1 (got {rep.get('schema_version')})")
    for inp in rep.get("inputs", []):
        check(isinstance(inp, dict) and {"role", "path", "files"} <= set(inp),
              f"{label}: input {inp.get('role') if isinstance(inp, dict) else inp} has role, path, files")
    rows = rep.get("tensors", [])
    check(len(rows) > 0, f"{label}: {len(rows)} rows")
    unnamed = [r for r in rows if not isinstance(r.get("name"), str)]
    check(not unnamed, f"{label}: every row has a name ({len(unnamed)} without)")
    if names is not None:
        unknown = sorted({r["name"] for r in rows if isinstance(r.get("name"), str)} - names)
        check(not unknown, f"{label}: every row names a tensor of the input ({unknown[:3]})")
    old = sorted({k for r in rows for k in r} & {"rel_err_fro", "rel_fro_error", "max_abs_err"})
    check(not old, f"{label}: no row uses an old error name ({old})")
    if rep.get("command") in ("svd-init", "mpo-init", "lq-decompose") or label == "quantize":
        check(all(isinstance(r.get("rel_error"), (int, float)) for r in rows),
              f"{label}: every row has rel_error")
    secs = rep.get("totals", {}).get("seconds")
    check(isinstance(secs, (int, float)) and secs >= 0, f"{label}: totals.seconds = {secs}")


def main():
    tmp = tempfile.mkdtemp(prefix="ckptkit-schema-")
    try:
        base = tensor_names(SAMPLE)
        out = lambda n: os.path.join(tmp, n)
        runs = [
            ("svd-init", ["svd-init", SAMPLE, "-o", out("pissa"), "--rank", "4", "--target", "fc1"], "pissa", base),
            ("mpo-init", ["mpo-init", SAMPLE, "-o", out("dota"), "--bond", "4", "--target", "fc1"], "dota", base),
            ("lq-decompose", ["lq-decompose", SAMPLE, "-o", out("lq"), "--rank", "4", "--max-iter", "1",
                              "--target", "layers.0.fc1"], "lq", base),
            ("quantize", ["quantize", SAMPLE, "-o", out("nf4"), "--target", "fc1"], "nf4", base),
            ("quantize --dequantize", ["quantize", out("nf4"), "--dequantize", "-o", out("deq")], "deq", base),
            ("quantize lossless", ["quantize", SAMPLE, "-o", out("zip"), "--scheme", "lossless"], "zip", base),
            ("merge", ["merge", out("pissa"), "-o", out("merged")], "merged", base),
            ("merge --to-lora", ["merge", "--to-lora", out("pissa") + "/adapter", out("pissa") + "/adapter",
                                 "-o", out("tolora"), "--rank", "2"], "tolora", base),
            ("analyze-spectrum", ["analyze-spectrum", SAMPLE, "-o", out("spec"), "--target", "fc1"], "spec", base),
            ("convert", ["convert", SAMPLE, "-o", out("f32"), "--dtype", "f32"], "f32", base),
        ]
        acts = cktest.shared_path("bytegpt-activations", "activations.safetensors")
        if acts:
            runs.append(("velora-init", ["velora-init", acts, "-o", out("velora"), "--groups", "8"], "velora",
                         tensor_names(acts)))
        for label, args, name, names in runs:
            r = subprocess.run([BIN, *args, "-q"], capture_output=True, text=True)
            check(r.returncode == 0, f"{label} exits 0 {r.stderr.strip()[:200]}")
            if r.returncode:
                continue
            path = os.path.join(out(name), "report.json")
            if not os.path.exists(path):  # dequantized and lossless outputs stay clean of it
                j = subprocess.run([BIN, *[a.replace(out(name), out(name + "-json")) for a in args], "--json"],
                                   capture_output=True, text=True)
                rep = json.loads(j.stdout)
            else:
                rep = json.load(open(path))
            validate(label, rep, names)
        parts = []
        for k in range(2):
            p = out(f"part{k}")
            subprocess.run([BIN, "quantize", SAMPLE, "-o", p, "--target", "fc1", "--shard", f"{k}/2", "-q"], check=True)
            parts.append(p)
        r = subprocess.run([BIN, "stitch", *parts, "-o", out("stitched"), "--json"], capture_output=True, text=True)
        check(r.returncode == 0, f"stitch exits 0 {r.stderr.strip()[:200]}")
        if r.returncode == 0:
            validate("stitch", json.loads(r.stdout), base)
        r = subprocess.run([BIN, "inspect", SAMPLE, "--json"], capture_output=True, text=True)
        j = json.loads(r.stdout)
        check(j.get("tool") == "ckptkit" and j.get("schema_version") == 1 and j.get("command") == "inspect",
              "inspect --json carries the envelope (tool, schema_version 1, command)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    check.exit()


if __name__ == "__main__":
    main()
