"""Small stand-ins for Hugging Face hub checkpoints, and PEFT's naming rules, written here
independently of ckptkit's C++ table (tests/cli/test_real_world.py compares the two).

For each model_type: the key names and shapes transformers' modeling_<type>.py gives the base
model's parameters (a few layers, tiny sizes), its `base_model_prefix`, the modules built as
transformers' Conv1D (weight stored [in, out]) and the causal-LM head. Sources: transformers
src/transformers/models/<type>/modeling_<type>.py (the __init__ of each module class).

PEFT side (peft/tuners/tuners_utils.py check_target_module_exists, peft/utils/save_and_load.py):
adapter keys are "base_model.model." + the task model's module path + ".lora_A.weight"; a
module is adapted when its name equals a target_modules entry or ends with "." + entry (a string
target_modules is a regex matched with re.fullmatch)."""
import re

import numpy as np

D, FFN, VOCAB, LAYERS = 16, 32, 40, 2


def _llama(i, qkv_bias=False, qk_norm=False, sandwich=False):
    p = f"layers.{i}."
    out = [(p + "self_attn.q_proj.weight", [D, D]), (p + "self_attn.k_proj.weight", [D // 2, D]),
           (p + "self_attn.v_proj.weight", [D // 2, D]), (p + "self_attn.o_proj.weight", [D, D])]
    if qkv_bias:
        out += [(p + "self_attn.q_proj.bias", [D]), (p + "self_attn.k_proj.bias", [D // 2]),
                (p + "self_attn.v_proj.bias", [D // 2])]
    if qk_norm:
        out += [(p + "self_attn.q_norm.weight", [4]), (p + "self_attn.k_norm.weight", [4])]
    out += [(p + "mlp.gate_proj.weight", [FFN, D]), (p + "mlp.up_proj.weight", [FFN, D]),
            (p + "mlp.down_proj.weight", [D, FFN]), (p + "input_layernorm.weight", [D]),
            (p + "post_attention_layernorm.weight", [D])]
    if sandwich:
        out += [(p + "pre_feedforward_layernorm.weight", [D]),
                (p + "post_feedforward_layernorm.weight", [D])]
    return out


def _decoder(layer, **kw):
    keys = [("embed_tokens.weight", [VOCAB, D])]
    for i in range(LAYERS):
        keys += layer(i, **kw)
    return keys + [("norm.weight", [D])]


def _mixtral(i):
    p = f"layers.{i}."
    out = _llama(i)[:4]
    out.append((p + "block_sparse_moe.gate.weight", [8, D]))  # router over 8 experts
    for e in range(2):
        q = p + f"block_sparse_moe.experts.{e}."
        out += [(q + "w1.weight", [FFN, D]), (q + "w2.weight", [D, FFN]), (q + "w3.weight", [FFN, D])]
    return out + [(p + "input_layernorm.weight", [D]), (p + "post_attention_layernorm.weight", [D])]


def _qwen2_moe(i):
    p = f"layers.{i}."
    out = _llama(i, qkv_bias=True)[:7]
    out.append((p + "mlp.gate.weight", [8, D]))
    for e in range(2):
        q = p + f"mlp.experts.{e}."
        out += [(q + "gate_proj.weight", [FFN, D]), (q + "up_proj.weight", [FFN, D]),
                (q + "down_proj.weight", [D, FFN])]
    out += [(p + "mlp.shared_expert.gate_proj.weight", [FFN, D]),
            (p + "mlp.shared_expert.up_proj.weight", [FFN, D]),
            (p + "mlp.shared_expert.down_proj.weight", [D, FFN]),
            (p + "mlp.shared_expert_gate.weight", [1, D])]
    return out + [(p + "input_layernorm.weight", [D]), (p + "post_attention_layernorm.weight", [D])]


def _phi3(i):
    p = f"layers.{i}."
    return [(p + "self_attn.qkv_proj.weight", [2 * D, D]), (p + "self_attn.o_proj.weight", [D, D]),
            (p + "mlp.gate_up_proj.weight", [2 * FFN, D]), (p + "mlp.down_proj.weight", [D, FFN]),
            (p + "input_layernorm.weight", [D]), (p + "post_attention_layernorm.weight", [D])]


def _phi():
    keys = [("embed_tokens.weight", [VOCAB, D])]
    for i in range(LAYERS):
        p = f"layers.{i}."
        keys += [(p + f"self_attn.{n}_proj.weight", [D, D]) for n in "qkv"]
        keys += [(p + "self_attn.dense.weight", [D, D]), (p + "mlp.fc1.weight", [FFN, D]),
                 (p + "mlp.fc2.weight", [D, FFN]), (p + "input_layernorm.weight", [D])]
    return keys + [("final_layernorm.weight", [D])]


def _starcoder2():
    keys = [("embed_tokens.weight", [VOCAB, D])]
    for i in range(LAYERS):
        p = f"layers.{i}."
        keys += [(p + f"self_attn.{n}_proj.weight", [D, D]) for n in "qkvo"]
        keys += [(p + "mlp.c_fc.weight", [FFN, D]), (p + "mlp.c_proj.weight", [D, FFN]),
                 (p + "input_layernorm.weight", [D])]
    return keys + [("norm.weight", [D])]


def _opt():
    keys = [("decoder.embed_tokens.weight", [VOCAB, D]), ("decoder.embed_positions.weight", [20, D])]
    for i in range(LAYERS):
        p = f"decoder.layers.{i}."
        keys += [(p + f"self_attn.{n}_proj.weight", [D, D]) for n in ("q", "k", "v", "out")]
        keys += [(p + "fc1.weight", [FFN, D]), (p + "fc2.weight", [D, FFN]),
                 (p + "self_attn_layer_norm.weight", [D]), (p + "final_layer_norm.weight", [D])]
    return keys + [("decoder.final_layer_norm.weight", [D])]


def _gpt2(conv1d=True):
    # GPT-2's Conv1D stores [in, out]: c_attn [D, 3D], c_fc [D, 4D], mlp.c_proj [4D, D].
    keys = [("wte.weight", [VOCAB, D]), ("wpe.weight", [20, D])]
    for i in range(LAYERS):
        p = f"h.{i}."
        keys += [(p + "ln_1.weight", [D]), (p + "attn.c_attn.weight", [D, 3 * D]),
                 (p + "attn.c_attn.bias", [3 * D]), (p + "attn.c_proj.weight", [D, D]),
                 (p + "ln_2.weight", [D]), (p + "mlp.c_fc.weight", [D, FFN]),
                 (p + "mlp.c_proj.weight", [FFN, D])]
    return keys + [("ln_f.weight", [D])]


def _gpt_bigcode():
    # nn.Linear, [out, in]: c_attn [D + 2 kv, D] (multi-query: kv = head dim 4).
    keys = [("wte.weight", [VOCAB, D]), ("wpe.weight", [20, D])]
    for i in range(LAYERS):
        p = f"h.{i}."
        keys += [(p + "ln_1.weight", [D]), (p + "attn.c_attn.weight", [D + 8, D]),
                 (p + "attn.c_proj.weight", [D, D]), (p + "ln_2.weight", [D]),
                 (p + "mlp.c_fc.weight", [FFN, D]), (p + "mlp.c_proj.weight", [D, FFN])]
    return keys + [("ln_f.weight", [D])]


def _gpt_neo():
    keys = [("wte.weight", [VOCAB, D]), ("wpe.weight", [20, D])]
    for i in range(LAYERS):
        p = f"h.{i}."
        keys += [(p + f"attn.attention.{n}_proj.weight", [D, D]) for n in ("q", "k", "v", "out")]
        keys += [(p + "ln_1.weight", [D]), (p + "mlp.c_fc.weight", [FFN, D]),
                 (p + "mlp.c_proj.weight", [D, FFN])]
    return keys + [("ln_f.weight", [D])]


def _gptj():
    keys = [("wte.weight", [VOCAB, D])]
    for i in range(LAYERS):
        p = f"h.{i}."
        keys += [(p + f"attn.{n}_proj.weight", [D, D]) for n in ("q", "k", "v", "out")]
        keys += [(p + "ln_1.weight", [D]), (p + "mlp.fc_in.weight", [FFN, D]),
                 (p + "mlp.fc_out.weight", [D, FFN])]
    return keys + [("ln_f.weight", [D])]


def _gpt_neox():
    keys = [("embed_in.weight", [VOCAB, D])]
    for i in range(LAYERS):
        p = f"layers.{i}."
        keys += [(p + "attention.query_key_value.weight", [3 * D, D]),
                 (p + "attention.dense.weight", [D, D]), (p + "mlp.dense_h_to_4h.weight", [FFN, D]),
                 (p + "mlp.dense_4h_to_h.weight", [D, FFN]), (p + "input_layernorm.weight", [D])]
    return keys + [("final_layer_norm.weight", [D])]


def _bloom():
    keys = [("word_embeddings.weight", [VOCAB, D]), ("word_embeddings_layernorm.weight", [D])]
    for i in range(LAYERS):
        p = f"h.{i}."
        keys += [(p + "input_layernorm.weight", [D]),
                 (p + "self_attention.query_key_value.weight", [3 * D, D]),
                 (p + "self_attention.dense.weight", [D, D]),
                 (p + "mlp.dense_h_to_4h.weight", [FFN, D]), (p + "mlp.dense_4h_to_h.weight", [D, FFN])]
    return keys + [("ln_f.weight", [D])]


def _falcon():
    keys = [("word_embeddings.weight", [VOCAB, D])]
    for i in range(LAYERS):
        p = f"h.{i}."
        keys += [(p + "input_layernorm.weight", [D]),
                 (p + "self_attention.query_key_value.weight", [D + 8, D]),
                 (p + "self_attention.dense.weight", [D, D]),
                 (p + "mlp.dense_h_to_4h.weight", [FFN, D]), (p + "mlp.dense_4h_to_h.weight", [D, FFN])]
    return keys + [("ln_f.weight", [D])]


def _bert():
    keys = [("embeddings.word_embeddings.weight", [VOCAB, D]),
            ("embeddings.position_embeddings.weight", [20, D]),
            ("embeddings.token_type_embeddings.weight", [2, D]), ("embeddings.LayerNorm.weight", [D])]
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        keys += [(p + f"attention.self.{n}.weight", [D, D]) for n in ("query", "key", "value")]
        keys += [(p + "attention.output.dense.weight", [D, D]),
                 (p + "intermediate.dense.weight", [FFN, D]), (p + "output.dense.weight", [D, FFN])]
    return keys + [("pooler.dense.weight", [D, D])]


def _distilbert():
    keys = [("embeddings.word_embeddings.weight", [VOCAB, D]),
            ("embeddings.position_embeddings.weight", [20, D])]
    for i in range(LAYERS):
        p = f"transformer.layer.{i}."
        keys += [(p + f"attention.{n}_lin.weight", [D, D]) for n in ("q", "k", "v", "out")]
        keys += [(p + "ffn.lin1.weight", [FFN, D]), (p + "ffn.lin2.weight", [D, FFN]),
                 (p + "sa_layer_norm.weight", [D])]
    return keys


# model_type -> (base_model_prefix, Conv1D leaf names, causal-LM head, base-model keys)
ARCHS = {
    "llama": ("model", (), "lm_head", _decoder(_llama)),
    "mistral": ("model", (), "lm_head", _decoder(_llama)),
    "mixtral": ("model", (), "lm_head", _decoder(_mixtral)),
    "qwen2": ("model", (), "lm_head", _decoder(_llama, qkv_bias=True)),
    "qwen2_moe": ("model", (), "lm_head", _decoder(_qwen2_moe)),
    "qwen3": ("model", (), "lm_head", _decoder(_llama, qk_norm=True)),
    "gemma": ("model", (), "lm_head", _decoder(_llama)),
    "gemma2": ("model", (), "lm_head", _decoder(_llama, sandwich=True)),
    "gemma3_text": ("model", (), "lm_head", _decoder(_llama, qk_norm=True, sandwich=True)),
    "phi": ("model", (), "lm_head", _phi()),
    "phi3": ("model", (), "lm_head", _decoder(_phi3)),
    "starcoder2": ("model", (), "lm_head", _starcoder2()),
    "opt": ("model", (), "lm_head", _opt()),
    "gpt2": ("transformer", ("c_attn", "c_proj", "c_fc"), "lm_head", _gpt2()),
    "gpt_neo": ("transformer", (), "lm_head", _gpt_neo()),
    "gpt_neox": ("gpt_neox", (), "embed_out", _gpt_neox()),
    "gptj": ("transformer", (), "lm_head", _gptj()),
    "bloom": ("transformer", (), "lm_head", _bloom()),
    "falcon": ("transformer", (), "lm_head", _falcon()),
    "gpt_bigcode": ("transformer", (), "lm_head", _gpt_bigcode()),
    "bert": ("bert", (), "cls.predictions.decoder", _bert()),
    "roberta": ("roberta", (), "lm_head.decoder", _bert()),
    "distilbert": ("distilbert", (), "vocab_projector", _distilbert()),
}


def make_weights(keys, seed):
    rng = np.random.default_rng(seed)
    return {k: (rng.standard_normal(s) * 0.05).astype(np.float32) for k, s in keys}


def hub_checkpoint(model_type, prefixed, seed=0):
    """name -> array of a hub-layout checkpoint: the base model's keys, or (prefixed) the task
    model's: every base key under base_model_prefix, plus the causal-LM head."""
    prefix, _, head, keys = ARCHS[model_type]
    w = make_weights(keys, seed)
    if not prefixed:
        return w
    out = {f"{prefix}.{k}": v for k, v in w.items()}
    out[head + ".weight"] = (np.random.default_rng(seed + 1).standard_normal([VOCAB, D]) * 0.05
                             ).astype(np.float32)
    return out


def task_model_modules(model_type, task="CAUSAL_LM"):
    """Module paths (weight-bearing) of the model PEFT wraps: AutoModelForCausalLM (base model
    under base_model_prefix, plus the head) or, for FEATURE_EXTRACTION, the base model itself."""
    prefix, _, head, keys = ARCHS[model_type]
    mods = {k.rsplit(".", 1)[0] for k, _ in keys}
    if task == "FEATURE_EXTRACTION":
        return mods
    return {f"{prefix}.{m}" for m in mods} | {head}


def peft_target_matches(target_modules, module):
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, module) is not None
    return any(module == t or module.endswith("." + t) for t in target_modules)


def peft_resolve(adapter_keys, config, namespace):
    """What PEFT does when it loads the adapter onto the task model: (modules found, problems).
    Problems: adapter modules the model lacks (their weights would be dropped as unexpected keys)
    or not matched by target_modules (no LoRA layer there), and targeted modules with no weights
    in the file (PEFT would leave them at their fresh initialisation)."""
    mods = set()
    for k in adapter_keys:
        assert k.startswith("base_model.model."), k
        m = re.sub(r"\.lora_(A|B|embedding_A|embedding_B)(\.weight)?$", "", k[len("base_model.model."):])
        mods.add(m)
    problems = []
    for m in sorted(mods):
        if m not in namespace:
            problems.append(f"{m}: not a module of the task model")
        elif not peft_target_matches(config["target_modules"], m):
            problems.append(f"{m}: not matched by target_modules {config['target_modules']}")
    for m in sorted(namespace):
        if peft_target_matches(config["target_modules"], m) and m not in mods:
            problems.append(f"{m}: targeted but has no weights in the adapter")
    return mods, problems
