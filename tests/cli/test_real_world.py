"""Real-world files (issue: the checkpoints and adapters people actually have).

- Every family of ckptkit's architecture table (docs/architectures.md): svd-init on a hub-layout
  stand-in stored without and with the base-model prefix writes the same adapter keys; an
  independent resolver that follows PEFT's naming (hub_layouts.py) finds every adapted module in
  the task model PEFT wraps and nothing missing; merging the adapter back gives W (1e-5).
- --task-type: SEQ_CLS keeps the task model's names, QUESTION_ANS uses the llama family's
  `transformer` attribute, FEATURE_EXTRACTION the bare base model's names.
- The real PEFT adapters in data/real merge into hub-layout bases as PEFT computes
  W + s·B·A (Conv1D: (s·B·A)ᵀ), also when a GPT-2 adapter says fan_in_fan_out false.
- modules_to_save heads replace or join the base's tensors; DoRA merges as PEFT's formula and
  converts to a LoRA whose error is the reported dropped energy.
- Unknown model_type, --module-prefix, and an adapter for another model (exit 2, both names)."""
import json
import os
import shutil
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import cktest as ck  # noqa: E402
import hub_layouts as hub  # noqa: E402

check = ck.Checks()
REAL = os.path.join(ck.DATA, "real")


def write_ckpt(d, arrays, config):
    os.makedirs(d, exist_ok=True)
    ck.write_safetensors(os.path.join(d, "model.safetensors"), arrays, {"format": "pt"})
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f)


def adapter_keys(d):
    h, _, _ = ck.read_raw(os.path.join(d, "adapter_model.safetensors"))
    return sorted(h)


def config_of(d):
    with open(os.path.join(d, "adapter_config.json")) as f:
        return json.load(f)


def report_of(d):
    with open(os.path.join(d, "report.json")) as f:
        return json.load(f)


def max_rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def architectures(tmp):
    worst = 0.0
    for t, (prefix, _, _, _) in hub.ARCHS.items():
        keysets, configs = {}, {}
        for layout in ("base", "task"):
            src = os.path.join(tmp, t, layout)
            w = hub.hub_checkpoint(t, prefixed=layout == "task")
            write_ckpt(src, w, {"model_type": t, "_name_or_path": f"hub/{t}"})
            out = os.path.join(tmp, t, layout + "-pissa")
            # MoE routers stay dense, as users leave them (qwen2_moe's shared_expert_gate has
            # one row: no rank-2 adapter fits it).
            p = ck.run("svd-init", src, "-o", out, "--rank", "2", "--svd", "exact",
                       "--exclude", "shared_expert_gate", expect=0)
            if not check(p.returncode == 0, f"{t}/{layout}: svd-init exit {p.returncode}"):
                continue
            keysets[layout] = adapter_keys(os.path.join(out, "adapter"))
            configs[layout] = config_of(os.path.join(out, "adapter"))
            mods, problems = hub.peft_resolve(keysets[layout], configs[layout],
                                              hub.task_model_modules(t))
            check(not problems and mods,
                  f"{t}/{layout}: PEFT's resolver finds all {len(mods)} adapted modules in the "
                  f"task model ({problems[:2]})")
            back = os.path.join(tmp, t, layout + "-back")
            p = ck.run("merge", out, "-o", back, "--dtype", "f32", expect=0)
            if not check(p.returncode == 0, f"{t}/{layout}: merge exit {p.returncode}"):
                continue
            got = ck.read_checkpoint(back)
            err = max(max_rel(got[k], v) for k, v in w.items() if v.ndim == 2)
            worst = max(worst, err)
            check(set(got) == set(w) and err < 1e-5,
                  f"{t}/{layout}: merge(residual, adapter) = W, names as stored, max rel err "
                  f"{err:.2e}")
        if len(keysets) == 2:
            check(keysets["base"] == keysets["task"] and
                  configs["base"]["target_modules"] == configs["task"]["target_modules"],
                  f"{t}: same {len(keysets['base'])} adapter keys from both layouts "
                  f"(e.g. {keysets['base'][0]})")
            check(all(k.startswith(f"base_model.model.{prefix}.") for k in keysets["base"]),
                  f"{t}: every key under the task model's '{prefix}.'")
            check(configs["base"]["base_model_name_or_path"] == f"hub/{t}" and
                  configs["base"]["task_type"] == "CAUSAL_LM",
                  f"{t}: base_model_name_or_path from config.json _name_or_path, task_type")
    print(f"worst merge round trip over {len(hub.ARCHS)} families x 2 layouts: {worst:.2e}")


def analyze_adapter(tmp):
    # analyze-spectrum --adapter resolves the task-model names against a prefix-less base too.
    for t in ("gpt2", "bloom"):
        base = os.path.join(tmp, t, "base")
        adapter = os.path.join(tmp, t, "task-pissa", "adapter")  # written from the prefixed layout
        out = os.path.join(tmp, t + "-drift")
        p = ck.run("analyze-spectrum", base, "--adapter", adapter, "-o", out, expect=0)
        n = len(adapter_keys(adapter)) // 2
        rows = len(report_of(out)["drift"]) if p.returncode == 0 else -1
        check(p.returncode == 0 and rows == n,
              f"analyze-spectrum {t} (base layout) --adapter (task names): {rows} drift rows of {n}")


def task_types(tmp):
    src = os.path.join(tmp, "llama", "base")
    for task, first in (("SEQ_CLS", "model."), ("QUESTION_ANS", "transformer."),
                        ("FEATURE_EXTRACTION", "layers.")):
        out = os.path.join(tmp, "llama-" + task)
        p = ck.run("svd-init", src, "-o", out, "--rank", "2", "--task-type", task.lower(),
                   "--target", "q_proj", expect=0)
        keys = adapter_keys(os.path.join(out, "adapter")) if p.returncode == 0 else []
        cfg = config_of(os.path.join(out, "adapter")) if p.returncode == 0 else {}
        check(keys and all(k.startswith("base_model.model." + first) for k in keys) and
              cfg.get("task_type") == task,
              f"--task-type {task}: keys start base_model.model.{first} ({keys[:1]})")
        p = ck.run("merge", out, "-o", out + "-back", expect=0)
        check(p.returncode == 0, f"--task-type {task}: its adapter merges back into the base")
    p = ck.run("svd-init", src, "-o", os.path.join(tmp, "bad-task"), "--task-type", "CLS", expect=2)
    check(p.returncode == 2 and "--task-type" in p.stderr, "--task-type CLS: exit 2 naming the flag")


def peft_delta(A, B, scale, conv1d):
    d = scale * (B.astype(np.float64) @ A.astype(np.float64))
    return d.T if conv1d else d


def gpt2_real(tmp):
    src = os.path.join(REAL, "gpt2-lora-tigrinya")
    cfg = config_of(src)
    ad = ck.read_checkpoint(os.path.join(src, "adapter_model.safetensors"))
    # The hub's gpt2 layout (no "transformer."), real shapes (768, 12 layers), small vocab.
    keys = [("wte.weight", [64, 768]), ("wpe.weight", [64, 768]), ("ln_f.weight", [768])]
    for i in range(12):
        p = f"h.{i}."
        keys += [(p + "attn.c_attn.weight", [768, 2304]), (p + "attn.c_proj.weight", [768, 768]),
                 (p + "mlp.c_fc.weight", [768, 3072]), (p + "mlp.c_proj.weight", [3072, 768]),
                 (p + "ln_1.weight", [768])]
    w = hub.make_weights(keys, 7)
    base = os.path.join(tmp, "gpt2-hub")
    write_ckpt(base, w, {"model_type": "gpt2", "_name_or_path": "gpt2"})
    scale = cfg["lora_alpha"] / cfg["r"]
    outs = {}
    for flag in (True, False):
        adir = os.path.join(tmp, f"gpt2-lora-fifo-{flag}")
        shutil.copytree(src, adir)
        c = dict(cfg, fan_in_fan_out=flag)
        with open(os.path.join(adir, "adapter_config.json"), "w") as f:
            json.dump(c, f)
        out = os.path.join(tmp, f"gpt2-merged-{flag}")
        p = ck.run("merge", base, adir, "-o", out, "--dtype", "f32", expect=0)
        if not check(p.returncode == 0, f"gpt2 real adapter (fan_in_fan_out {flag}): merge exit 0"):
            return
        got = ck.read_checkpoint(out)
        err, n = 0.0, 0
        for k in ad:
            if not k.endswith("lora_A.weight"):
                continue
            m = k[len("base_model.model.transformer."):-len(".lora_A.weight")]
            want = w[m + ".weight"] + peft_delta(ad[k], ad[k.replace("lora_A", "lora_B")], scale, True)
            err = max(err, max_rel(got[m + ".weight"], want))
            n += 1
        check(n == 36 and err <= 1e-5,
              f"gpt2 real adapter (fan_in_fan_out {flag}): {n} Conv1D modules merged as PEFT, "
              f"max rel err {err:.2e}")
        notes = report_of(out)["settings"]["adapters"][0]["notes"]
        check((len(notes) > 0) == (not flag),
              f"gpt2 real adapter (fan_in_fan_out {flag}): {len(notes)} PEFT override note(s)"
              + (f", e.g. '{notes[0]}'" if notes else ""))
        outs[flag] = out
    if len(outs) == 2:
        diff = ck.same_files(outs[True], outs[False])
        check(diff == [], f"fan_in_fan_out false and true merge to the same bytes ({diff})")


def opencalm_real(tmp):
    src = os.path.join(REAL, "opencalm1b-lora-r1")
    cfg = config_of(src)
    ad, meta = ck.read_safetensors(os.path.join(src, "adapter_model.safetensors"))
    # open-calm-1b: GPT-NeoX, hidden 2048, 24 layers, stored with "gpt_neox." (as Pythia). The full
    # base is 1.2 GB in f32; CKPTKIT_REAL_FULL=1 merges all 24 layers, CI three of them (the real
    # tensors of layers 0, 11 and 23, bytes unchanged).
    layers = range(24) if os.environ.get("CKPTKIT_REAL_FULL") else (0, 11, 23)
    adir = os.path.join(tmp, "opencalm-adapter")
    os.makedirs(adir)
    shutil.copy(os.path.join(src, "adapter_config.json"), adir)
    raw, _ = ck.read_safetensors(os.path.join(src, "adapter_model.safetensors"), raw=True)
    keep = {k: v for k, v in raw.items() if int(k.split(".")[4]) in layers}
    header, off, blobs = {"__metadata__": meta} if meta else {}, 0, []
    for k, (dt, shape, b) in keep.items():
        header[k] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(os.path.join(adir, "adapter_model.safetensors"), "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + b"".join(blobs))
    check(all(ad[k].dtype == np.float16 for k in ad), "open-calm adapter tensors are F16")
    keys = [("gpt_neox.embed_in.weight", [64, 2048]), ("embed_out.weight", [64, 2048])]
    for i in layers:
        keys.append((f"gpt_neox.layers.{i}.attention.query_key_value.weight", [6144, 2048]))
    w = hub.make_weights(keys, 11)
    for layout in ("task", "base"):
        ww = w if layout == "task" else {k.replace("gpt_neox.", "", 1): v for k, v in w.items()
                                         if k != "embed_out.weight"}
        base = os.path.join(tmp, "neox-" + layout)
        write_ckpt(base, ww, {"model_type": "gpt_neox", "_name_or_path": "cyberagent/open-calm-1b"})
        out = os.path.join(tmp, "neox-merged-" + layout)
        p = ck.run("merge", base, adir, "-o", out, "--dtype", "f32", expect=0)
        if not check(p.returncode == 0, f"open-calm real adapter into {layout} layout: exit 0"):
            continue
        got = ck.read_checkpoint(out)
        err = 0.0
        for i in layers:
            k = f"base_model.model.gpt_neox.layers.{i}.attention.query_key_value.lora_A.weight"
            name = f"gpt_neox.layers.{i}.attention.query_key_value.weight"
            stored = name if layout == "task" else name[len("gpt_neox."):]
            want = w[name] + peft_delta(ad[k], ad[k.replace("lora_A", "lora_B")],
                                        cfg["lora_alpha"] / cfg["r"], False)
            err = max(err, max_rel(got[stored], want))
        check(err <= 1e-5, f"open-calm real F16 rank-1 adapter, {len(layers)} layers into the "
                           f"{layout} layout: max rel err {err:.2e}")


def write_adapter(d, cfg, tensors):
    os.makedirs(d, exist_ok=True)
    ck.write_safetensors(os.path.join(d, "adapter_model.safetensors"), tensors, {"format": "pt"})
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump(dict({"peft_type": "LORA", "task_type": "CAUSAL_LM"}, **cfg), f)


def modules_to_save(tmp):
    rng = np.random.default_rng(3)
    base = os.path.join(tmp, "llama", "base")  # prefix-less llama from architectures()
    w = ck.read_checkpoint(base)
    A = rng.standard_normal([2, hub.D]).astype(np.float32)
    B = rng.standard_normal([hub.D, 2]).astype(np.float32)
    score = rng.standard_normal([3, hub.D]).astype(np.float32)
    adir = os.path.join(tmp, "seqcls-adapter")
    write_adapter(adir, {"r": 2, "lora_alpha": 4, "target_modules": ["q_proj"],
                         "task_type": "SEQ_CLS", "modules_to_save": ["classifier", "score"]},
                  {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": A,
                   "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": B,
                   "base_model.model.score.weight": score})
    out = os.path.join(tmp, "seqcls-merged")
    p = ck.run("merge", base, adir, "-o", out, expect=0)
    if not check(p.returncode == 0, "SEQ_CLS adapter with a saved score head: merge exit 0"):
        return
    got = ck.read_checkpoint(out)
    with open(os.path.join(out, "model", "config.json")) as f:
        conf = json.load(f)
    want_q = w["layers.0.self_attn.q_proj.weight"] + 2.0 * (B @ A)
    check(np.array_equal(got.get("score.weight"), score) and
          set(got) == {"model." + k for k in w} | {"score.weight"} and
          max_rel(got["model.layers.0.self_attn.q_proj.weight"], want_q) < 1e-6 and
          len(conf.get("id2label", {})) == 3,
          "saved head added, output in the task model's names (model.*, score.weight), "
          "config id2label has 3 labels")
    # A task-layout base that already has the head: the trained copy replaces it.
    tbase = os.path.join(tmp, "llama-task-cls")
    tw = {"model." + k: v for k, v in w.items()}
    tw["score.weight"] = np.zeros([3, hub.D], np.float32)
    write_ckpt(tbase, tw, {"model_type": "llama"})
    out2 = os.path.join(tmp, "seqcls-merged-task")
    p = ck.run("merge", tbase, adir, "-o", out2, expect=0)
    got2 = ck.read_checkpoint(out2) if p.returncode == 0 else {}
    check(p.returncode == 0 and np.array_equal(got2.get("score.weight"), score) and
          set(got2) == set(tw) and report_of(out2)["totals"]["replaced"] == 1,
          "saved head replaces the base's score.weight, names unchanged")


def dora(tmp):
    rng = np.random.default_rng(5)
    for t, name, conv1d in (("llama", "layers.0.mlp.up_proj", False),
                            ("gpt2", "h.1.attn.c_attn", True)):
        base = os.path.join(tmp, t, "base")
        w = ck.read_checkpoint(base)
        W = w[name + ".weight"].astype(np.float64)
        Wt = W.T if conv1d else W  # [out, in] as PEFT's get_weight_norm sees it
        out_f, in_f = Wt.shape
        A = rng.standard_normal([4, in_f]).astype(np.float32) * 0.3
        B = rng.standard_normal([out_f, 4]).astype(np.float32) * 0.3
        mag = (np.linalg.norm(Wt, axis=1) * rng.uniform(0.5, 1.5, out_f)).astype(np.float32)
        module = hub.ARCHS[t][0] + "." + name
        adir = os.path.join(tmp, f"dora-{t}")
        write_adapter(adir, {"r": 4, "lora_alpha": 8, "use_dora": True,
                             "target_modules": [name.rsplit(".", 1)[1]],
                             "fan_in_fan_out": conv1d, "base_model_name_or_path": f"hub/{t}"},
                      {f"base_model.model.{module}.lora_A.weight": A,
                       f"base_model.model.{module}.lora_B.weight": B,
                       f"base_model.model.{module}.lora_magnitude_vector": mag})
        # PEFT's DoraLinearVariant.merge_safe: W' = m / ||W + s·B·A||_row · (W + s·B·A).
        V = Wt + 2.0 * (B.astype(np.float64) @ A.astype(np.float64))
        merged = (mag.astype(np.float64) / np.linalg.norm(V, axis=1))[:, None] * V
        out = os.path.join(tmp, f"dora-{t}-merged")
        p = ck.run("merge", base, adir, "-o", out, "--dtype", "f32", expect=0)
        got = ck.read_checkpoint(out)[name + ".weight"] if p.returncode == 0 else None
        err = max_rel(got.T if conv1d else got, merged) if got is not None else 1.0
        check(err <= 1e-5, f"DoRA merge ({t}, {'Conv1D' if conv1d else 'Linear'}) = numpy "
                           f"transcription of PEFT's formula, max rel err {err:.2e}")
        for rank in (2, 8):
            lora = os.path.join(tmp, f"dora-{t}-lora{rank}")
            p = ck.run("merge", "--to-lora", base, adir, "-o", lora, "--rank", rank, expect=0)
            if not check(p.returncode == 0, f"DoRA -> LoRA rank {rank} ({t}): exit 0"):
                continue
            la = ck.read_checkpoint(os.path.join(lora, "adapter", "adapter_model.safetensors"))
            lc = config_of(os.path.join(lora, "adapter"))
            k = f"base_model.model.{module}"
            approx = (lc["lora_alpha"] / lc["r"]) * (
                la[k + ".lora_B.weight"].astype(np.float64) @ la[k + ".lora_A.weight"])
            miss = float(np.sum((merged - Wt - approx) ** 2))
            rep = report_of(lora)["totals"]["dropped_energy"]
            check(abs(miss - rep) <= 1e-4 * max(rep, 1e-12) + 1e-9 and not lc["use_dora"],
                  f"DoRA -> LoRA rank {rank} ({t}): ||D - s·B·A||^2 = {miss:.6g}, reported "
                  f"dropped energy {rep:.6g}")


def peft_rules(tmp):
    """layers_to_transform, rank_pattern / alpha_pattern with rsLoRA, BF16 factors, zero B."""
    rng = np.random.default_rng(4)
    base = os.path.join(tmp, "llama", "base")
    w = ck.read_checkpoint(base)
    t = {}
    for i, r in ((0, 2), (1, 4)):
        k = f"base_model.model.model.layers.{i}.self_attn.q_proj"
        t[k + ".lora_A.weight"] = rng.standard_normal([r, hub.D]).astype(np.float32)
        t[k + ".lora_B.weight"] = rng.standard_normal([hub.D, r]).astype(np.float32)
    adir = os.path.join(tmp, "rules-adapter")
    write_adapter(adir, {"r": 2, "lora_alpha": 4, "use_rslora": True, "target_modules": ["q_proj"],
                         "rank_pattern": {"layers.1.self_attn.q_proj": 4},
                         "alpha_pattern": {"layers.1.self_attn.q_proj": 16},
                         "layers_to_transform": [1], "layers_pattern": "layers"}, t)
    ck.write_safetensors(os.path.join(adir, "adapter_model.safetensors"), t, {"format": "pt"},
                         bf16=set(t))
    out = os.path.join(tmp, "rules-merged")
    p = ck.run("merge", base, adir, "-o", out, "--dtype", "f32", expect=0)
    if not check(p.returncode == 0, "layers_to_transform + patterns + rsLoRA + BF16: exit 0"):
        return
    got = ck.read_checkpoint(out)
    k = "base_model.model.model.layers.1.self_attn.q_proj"
    bf = lambda a: ck.bf16_to_f32(ck.f32_to_bf16_rne(a)).astype(np.float64)  # noqa: E731
    want = w["layers.1.self_attn.q_proj.weight"] + (16 / np.sqrt(4)) * (
        bf(t[k + ".lora_B.weight"]) @ bf(t[k + ".lora_A.weight"]))
    notes = report_of(out)["settings"]["adapters"][0]["notes"]
    check(np.array_equal(got["layers.0.self_attn.q_proj.weight"], w["layers.0.self_attn.q_proj.weight"])
          and max_rel(got["layers.1.self_attn.q_proj.weight"], want) < 1e-6 and
          any("layers_to_transform" in n for n in notes),
          f"layer 0 left alone as PEFT does ({notes}), layer 1 = W + (16/sqrt 4)·B·A from BF16")
    zdir = os.path.join(tmp, "zero-adapter")
    write_adapter(zdir, {"r": 2, "lora_alpha": 4, "target_modules": ["q_proj"]},
                  {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight":
                   rng.standard_normal([2, hub.D]).astype(np.float32),
                   "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight":
                   np.zeros([hub.D, 2], np.float32)})
    out = os.path.join(tmp, "zero-merged")
    p = ck.run("merge", base, zdir, "-o", out, expect=0)
    notes = report_of(out)["settings"]["adapters"][0]["notes"] if p.returncode == 0 else []
    got = ck.read_checkpoint(out, raw=True) if p.returncode == 0 else {}
    same = got == ck.read_checkpoint(base, raw=True)
    check(p.returncode == 0 and any("changes nothing" in n for n in notes) and same,
          f"every lora_B zero: merged tensors = base's bytes, reported ({notes})")


def bad_input(tmp):
    # Unknown family: names that match still merge, and the report says what was assumed.
    rng = np.random.default_rng(9)
    base = os.path.join(tmp, "mystery")
    Wq = rng.standard_normal([8, 8]).astype(np.float32)
    write_ckpt(base, {"blocks.0.q.weight": Wq}, {"model_type": "mystery"})
    A = rng.standard_normal([2, 8]).astype(np.float32)
    B = rng.standard_normal([8, 2]).astype(np.float32)
    adir = os.path.join(tmp, "mystery-adapter")
    write_adapter(adir, {"r": 2, "lora_alpha": 2, "target_modules": ["q"]},
                  {"base_model.model.blocks.0.q.lora_A.weight": A,
                   "base_model.model.blocks.0.q.lora_B.weight": B})
    out = os.path.join(tmp, "mystery-merged")
    p = ck.run("merge", base, adir, "-o", out, expect=0)
    said = report_of(out)["settings"]["module_naming"] if p.returncode == 0 else ""
    check(p.returncode == 0 and "not in ckptkit's table" in said,
          f"unknown model_type with matching names: merged; report says '{said}'")
    p = ck.run("svd-init", base, "-o", os.path.join(tmp, "mystery-pissa"), "--rank", "2", expect=0)
    said = report_of(os.path.join(tmp, "mystery-pissa"))["settings"]["module_naming"] \
        if p.returncode == 0 else ""
    keys = adapter_keys(os.path.join(tmp, "mystery-pissa", "adapter")) if p.returncode == 0 else []
    check(keys == ["base_model.model.blocks.0.q.lora_A.weight",
                   "base_model.model.blocks.0.q.lora_B.weight"] and "--module-prefix" in said,
          f"svd-init on an unknown family: names as stored, the report says so ('{said}')")
    # The same adapter written for the task model (prefix 'net') merges with --module-prefix.
    adir2 = os.path.join(tmp, "mystery-adapter-net")
    write_adapter(adir2, {"r": 2, "lora_alpha": 2, "target_modules": ["q"]},
                  {"base_model.model.net.blocks.0.q.lora_A.weight": A,
                   "base_model.model.net.blocks.0.q.lora_B.weight": B})
    p = ck.run("merge", base, adir2, "-o", os.path.join(tmp, "m2"), expect=2)
    check(p.returncode == 2 and "net.blocks.0.q" in p.stderr,
          f"prefixed names, unknown family: exit 2 naming the module ({p.stderr.strip()[:160]})")
    p = ck.run("merge", base, adir2, "-o", os.path.join(tmp, "m3"), "--module-prefix", "net",
               expect=0)
    check(p.returncode == 0, "--module-prefix net: the same adapter merges")
    # An adapter for another model: exit 2 naming the module and both names tried.
    adir3 = os.path.join(tmp, "other-adapter")
    write_adapter(adir3, {"r": 2, "lora_alpha": 2, "target_modules": ["c_attn"]},
                  {"base_model.model.transformer.h.5.attn.c_attn.lora_A.weight": A,
                   "base_model.model.transformer.h.5.attn.c_attn.lora_B.weight": B})
    p = ck.run("merge", os.path.join(tmp, "gpt2", "base"), adir3, "-o", os.path.join(tmp, "m4"),
               expect=2)
    err = p.stderr.strip()
    check(p.returncode == 2 and "'transformer.h.5.attn.c_attn.weight'" in err and
          "'h.5.attn.c_attn.weight'" in err and len(err.splitlines()) == 1,
          f"module in neither layout: exit 2, one line, both names ({err[:200]})")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        architectures(tmp)
        analyze_adapter(tmp)
        task_types(tmp)
        if os.path.isdir(REAL):
            gpt2_real(tmp)
            opencalm_real(tmp)
        else:
            ck.skip(f"{REAL} not present")
        modules_to_save(tmp)
        dora(tmp)
        peft_rules(tmp)
        bad_input(tmp)
    check.exit()


if __name__ == "__main__":
    main()
