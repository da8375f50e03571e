"""PyTorch `.bin` input (io/torch_bin.hpp): `ckptkit convert X.bin -o out` gives a safetensors
checkpoint whose tensors are byte for byte what torch.load returned (data/torch-bin/*.expected,
made with torch by tests/fixtures/make_torch_bin.py): f32/f16/bf16 state dicts, tied weights
(one storage, two names), strided and offset views, a Parameter with int64/bool/int8/f64 buffers,
and a sharded checkpoint with pytorch_model.bin.index.json. A pickle calling os.system and the
legacy format are refused with exit 2 and one line; truncated or corrupted zips exit 2 quickly;
other commands read `.bin` inputs too."""
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import cktest as ck  # noqa: E402
import hub_layouts as hub  # noqa: E402

check = ck.Checks()
FIX = os.path.join(ck.DATA, "torch-bin")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("f32", "f16", "bf16", "tied", "views", "params_ints", "sharded"):
            src = os.path.join(FIX, name if name == "sharded" else name + ".bin")
            out = os.path.join(tmp, name)
            p = ck.run("convert", src, "-o", out, expect=0)
            if not check(p.returncode == 0, f"{name}: convert exit 0"):
                continue
            got = ck.read_checkpoint(out, raw=True)
            want = ck.read_checkpoint(os.path.join(FIX, name + ".expected.safetensors"), raw=True)
            check(got == want, f"{name}: {len(want)} tensors byte-identical to torch.load "
                               f"({sorted(want)[:4]})")
            check(not any(f.endswith(".bin") for f in os.listdir(out)),
                  f"{name}: no .bin copied into the output")
        for name, needle in (("evil", "GLOBAL 'os system'"), ("legacy", "legacy torch.save")):
            out = os.path.join(tmp, name)
            p = ck.run("convert", os.path.join(FIX, name + ".bin"), "-o", out, expect=2)
            err = p.stderr.strip()
            check(p.returncode == 2 and needle in err and len(err.splitlines()) == 1 and
                  not os.path.exists(out), f"{name}: exit 2, one line, no output ({err[:120]})")
        # Corrupted copies: every truncation point and flipped bytes give exit 2 in a bounded time.
        with open(os.path.join(FIX, "tied.bin"), "rb") as f:
            good = f.read()
        worst, codes = 0.0, set()
        cases = [good[:n] for n in range(0, len(good), 37)]
        for i in range(0, len(good), 53):
            b = bytearray(good)
            b[i] ^= 0xFF
            cases.append(bytes(b))
        for i, data in enumerate(cases):
            path = os.path.join(tmp, f"bad{i}.bin")
            with open(path, "wb") as f:
                f.write(data)
            t0 = time.time()
            p = ck.run("inspect", path)
            worst = max(worst, time.time() - t0)
            codes.add(p.returncode)
            if p.returncode not in (0, 2) or (p.returncode == 2 and len(p.stderr.strip().splitlines()) != 1):
                check(False, f"corrupt case {i}: exit {p.returncode}: {p.stderr[-300:]}")
        check(codes <= {0, 2}, f"{len(cases)} truncated/flipped copies: exit codes {sorted(codes)}, "
                               f"slowest {worst:.2f}s")
        # Other commands take .bin inputs: svd-init reads the f32 state dict.
        d = os.path.join(tmp, "binmodel")
        os.makedirs(d)
        shutil.copy(os.path.join(FIX, "f32.bin"), os.path.join(d, "pytorch_model.bin"))
        p = ck.run("svd-init", d, "-o", os.path.join(tmp, "pissa"), "--rank", "1",
                   "--target", "0,2", expect=0)
        check(p.returncode == 0 and os.path.exists(os.path.join(tmp, "pissa", "adapter")),
              "svd-init reads a folder holding pytorch_model.bin")
        # A PEFT adapter saved as adapter_model.bin merges as its safetensors twin does.
        base = os.path.join(tmp, "llama")
        os.makedirs(base)
        w = hub.hub_checkpoint("llama", prefixed=False)
        ck.write_safetensors(os.path.join(base, "model.safetensors"), w, {"format": "pt"})
        with open(os.path.join(base, "config.json"), "w") as f:
            f.write('{"model_type": "llama"}')
        twin = os.path.join(tmp, "adapter-st")
        os.makedirs(twin)
        shutil.copy(os.path.join(FIX, "peft-adapter-bin", "adapter_config.json"), twin)
        shutil.copy(os.path.join(FIX, "peft-adapter-bin.expected.safetensors"),
                    os.path.join(twin, "adapter_model.safetensors"))
        outs = []
        for adapter in (os.path.join(FIX, "peft-adapter-bin"), twin):
            out = os.path.join(tmp, "merged-" + os.path.basename(adapter))
            p = ck.run("merge", base, adapter, "-o", out, expect=0)
            outs.append(out if p.returncode == 0 else None)
        lora = ck.read_checkpoint(os.path.join(FIX, "peft-adapter-bin.expected.safetensors"))
        k = "base_model.model.model.layers.1.self_attn.q_proj"
        got = ck.read_checkpoint(outs[0])["layers.1.self_attn.q_proj.weight"] if outs[0] else None
        want = w["layers.1.self_attn.q_proj.weight"] + 2.0 * (lora[k + ".lora_B.weight"] @
                                                             lora[k + ".lora_A.weight"])
        check(None not in outs and ck.read_checkpoint(outs[0], raw=True) ==
              ck.read_checkpoint(outs[1], raw=True) and abs(got - want).max() < 1e-6,
              "adapter_model.bin merges to the same tensors as its safetensors twin, = W + s·B·A")
    check.exit()


if __name__ == "__main__":
    main()
