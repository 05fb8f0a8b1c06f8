#!/usr/bin/env python3
"""Builds the Hugging Face oracle the C# model families and tokenizers are tested against.

Usage: python3 test/oracle/build_hf_fixtures.py OUTDIR

For every case it writes OUTDIR/<case>/ with a tiny random checkpoint saved by transformers
(config.json, generation_config.json, model.safetensors), keys.txt (each tensor of
model.safetensors: name, shape, dtype) and oracle.safetensors (inputs and transformers' own
outputs). OUTDIR/tokenizers/{bpe,spm}/ hold two tiny trained tokenizers with encodings.json.
OUTDIR/CASES.md says what each case exercises and what transformers did with it;
OUTDIR/hf_versions.txt the library versions.

Nothing here is tested C# code: this is the independent reference, so it uses transformers as
a user would (public API, eager attention, fp32 on the CPU) and never re-implements a model.
Every step is guarded, so one family that a transformers version cannot build leaves its
error in CASES.md instead of stopping the others.
"""

import json
import os
import shutil
import sys
import traceback
import zlib
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

VOCAB = 200  # not a power of two, so a shape bug cannot hide behind alignment
SEQ = 16
PAD_TAIL = 5  # row 1 is right-padded over its last 5 positions
PROMPT = 5
NEW_TOKENS = 8

# Special ids are switched off: real ones (Phi-3's 32000, OLMo2's 50279) lie outside a tiny
# vocabulary, and an eos id would let greedy generation stop early at random.
COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=88,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    pad_token_id=None,
    bos_token_id=None,
    eos_token_id=None,
    tie_word_embeddings=False,
)


def rope(theta, **extra):
    return dict(rope_type=extra.pop("rope_type", "default"), rope_theta=float(theta), **extra)


# name, model_type, what it exercises, config overrides (over COMMON), norm weights stored as
# an offset from one (Gemma's (1 + w) scaling). `fallback` is tried when the case cannot be built.
CASES = [
    dict(name="llama2", model_type="llama",
         what="plain Llama: RMSNorm, SwiGLU, GQA 4q/2kv, default RoPE theta 1e4, untied head",
         cfg=dict(head_dim=16, rope_parameters=rope(10000.0))),
    dict(name="llama3", model_type="llama",
         what="Llama 3.x RoPE scaling (factor 8, low 1, high 4, original context 64) with theta 5e5, "
              "tied embeddings like Llama 3.2. With head_dim 16 the 8 frequencies fall in all three "
              "llama3 regimes: index 0 (wavelength 6.3 < 64/4) kept, index 1 (wavelength 32.5, "
              "between 16 and 64) smoothed, index >= 2 divided by 8. max_position_embeddings is 128 "
              "so the original context (64) is below it, as in real checkpoints",
         cfg=dict(head_dim=16, tie_word_embeddings=True, max_position_embeddings=128,
                  rope_parameters=rope(500000.0, rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                       high_freq_factor=4.0, original_max_position_embeddings=64))),
    dict(name="llama_bias", model_type="llama",
         what="Llama with attention_bias and mlp_bias (q/k/v/o and gate/up/down biases)",
         cfg=dict(head_dim=16, attention_bias=True, mlp_bias=True, rope_parameters=rope(10000.0))),
    dict(name="mistral", model_type="mistral",
         what="Mistral sliding-window attention, window 5, on every layer (16-token inputs and "
              "5+8-token generation both pass the window)",
         cfg=dict(head_dim=16, sliding_window=5, rope_parameters=rope(10000.0))),
    dict(name="mixtral", model_type="mixtral",
         what="Mixtral sparse MoE: 4 experts, top-2, softmax router, router_aux_loss_coef 0.02; "
              "no sliding window",
         cfg=dict(head_dim=16, intermediate_size=64, num_local_experts=4, num_experts_per_tok=2,
                  sliding_window=None, router_aux_loss_coef=0.02, router_jitter_noise=0.0,
                  rope_parameters=rope(1000000.0))),
    dict(name="gemma", model_type="gemma", gemma_norm=True,
         what="Gemma 1: hidden 48 with 4 heads of 16 (o_proj not square), gelu_pytorch_tanh, "
              "embeddings scaled by sqrt(hidden), (1 + w) RMSNorm, tied head",
         cfg=dict(hidden_size=48, head_dim=16, hidden_act="gelu_pytorch_tanh", tie_word_embeddings=True,
                  rope_parameters=rope(10000.0))),
    dict(name="gemma2", model_type="gemma2", gemma_norm=True,
         what="Gemma 2: sandwich norms, attention logit softcap 2.0 and final logit softcap 3.0 "
              "(small so they bite), query_pre_attn_scalar 24 (not head_dim), sliding window 5 on "
              "layers 0 and 2, full attention on layer 1",
         cfg=dict(hidden_size=48, head_dim=16, num_hidden_layers=3, hidden_activation="gelu_pytorch_tanh",
                  sliding_window=5, attn_logit_softcapping=2.0, final_logit_softcapping=3.0,
                  query_pre_attn_scalar=24,
                  layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                  tie_word_embeddings=True, rope_parameters=rope(10000.0))),
    dict(name="gemma3_text", model_type="gemma3_text", gemma_norm=True,
         what="Gemma 3 text: q/k RMSNorm (1 + w), sandwich norms, sliding window 5 on layers 0 and 2, "
              "full attention on layer 1; local RoPE theta 1e4, global theta 1e6 with linear scaling "
              "factor 2 (per-layer-type rope_parameters); query_pre_attn_scalar 20; no softcapping",
         cfg=dict(hidden_size=48, head_dim=16, num_hidden_layers=3, hidden_activation="gelu_pytorch_tanh",
                  sliding_window=5, query_pre_attn_scalar=20,
                  layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                  tie_word_embeddings=True,
                  rope_parameters={
                      "sliding_attention": rope(10000.0),
                      "full_attention": rope(1000000.0, rope_type="linear", factor=2.0),
                  })),
    dict(name="qwen2", model_type="qwen2",
         what="Qwen2: q/k/v bias (no o_proj bias), no sliding window",
         cfg=dict(rope_parameters=rope(10000.0))),
    dict(name="qwen2_sliding", model_type="qwen2",
         what="Qwen2 with use_sliding_window, window 5, max_window_layers 1: transformers decides "
              "which layers slide (see layer_types in config.json and the facts below)",
         cfg=dict(num_hidden_layers=3, use_sliding_window=True, sliding_window=5, max_window_layers=1,
                  rope_parameters=rope(10000.0))),
    dict(name="qwen3", model_type="qwen3",
         what="Qwen3: per-head q/k RMSNorm, explicit head_dim 16 with hidden 48 (head_dim is not "
              "hidden/heads), no biases, tied head like Qwen3-0.6B, theta 1e6",
         cfg=dict(hidden_size=48, head_dim=16, tie_word_embeddings=True, rope_parameters=rope(1000000.0))),
    dict(name="phi3", model_type="phi3",
         what="Phi-3: fused qkv_proj and gate_up_proj, partial rotary 0.5 (Phi-4-mini style)",
         cfg=dict(original_max_position_embeddings=64,
                  rope_parameters=rope(10000.0, partial_rotary_factor=0.5)),
         fallback=dict(original_max_position_embeddings=64, rope_parameters=rope(10000.0))),
    dict(name="granite", model_type="granite",
         what="Granite: embedding_multiplier 3, attention_multiplier 0.2 (replaces 1/sqrt(head_dim)), "
              "residual_multiplier 0.5, logits divided by logits_scaling 4",
         cfg=dict(embedding_multiplier=3.0, attention_multiplier=0.2, residual_multiplier=0.5,
                  logits_scaling=4.0, rope_parameters=rope(10000.0))),
    dict(name="olmo2", model_type="olmo2",
         what="OLMo 2: norms after attention and MLP (no pre-norm), q/k RMSNorm over the whole "
              "projection (hidden-wide, before the head split)",
         cfg=dict(rope_parameters=rope(500000.0))),
    dict(name="glm4", model_type="glm4",
         what="GLM-4 (glm4): partial rotary 0.5 with interleaved (even/odd) rotation, fused "
              "gate_up_proj, q/k/v bias, extra post_self_attn_layernorm and post_mlp_layernorm",
         cfg=dict(head_dim=16, attention_bias=True, partial_rotary_factor=0.5,
                  rope_parameters=rope(10000.0, partial_rotary_factor=0.5))),
    dict(name="glm", model_type="glm",
         what="GLM (glm, GLM-4-9B-chat-hf): partial rotary 0.5 interleaved, fused gate_up_proj, "
              "q/k/v bias, plain pre-norm blocks",
         cfg=dict(head_dim=16, attention_bias=True, partial_rotary_factor=0.5,
                  rope_parameters=rope(10000.0, partial_rotary_factor=0.5))),
]


def seed_of(name):
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def jsonable(x):
    return json.loads(json.dumps(x, default=str))


def randomize(model, gemma_norm, gen):
    """Replaces transformers' init (norm weights 1 or 0, biases 0) so a wrong norm offset, a
    dropped bias or a misnamed tensor changes the outputs visibly."""
    n_experts = model.config.to_dict().get("num_local_experts") or -1
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and "norm" in name:
                if gemma_norm:
                    p.copy_(torch.empty_like(p).uniform_(-0.5, 0.5, generator=gen))
                else:
                    p.copy_(torch.empty_like(p).uniform_(0.5, 1.5, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
            elif "embed" in name:
                # also the output head where tied: wider would saturate the softmax
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
            elif p.dim() == 2 and p.shape[0] == n_experts:
                # the router: wide logits keep the top-2 choice far from a tie
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.15)


def build_config(model_type, overrides):
    kwargs = dict(COMMON)
    kwargs.update(overrides)
    cfg = AutoConfig.for_model(model_type, **kwargs)
    return cfg, kwargs


def config_mismatches(cfg, kwargs):
    """What transformers changed or dropped of what we asked for (reported, not fatal)."""
    d = cfg.to_dict()
    out = []
    for k, v in kwargs.items():
        got = d.get(k, getattr(cfg, k, "<absent>"))
        if jsonable(got) != jsonable(v):
            out.append(f"{k}: asked {jsonable(v)!r}, config has {jsonable(got)!r}")
    return out


def make_model(case, overrides, gen_seed):
    cfg, kwargs = build_config(case["model_type"], overrides)
    torch.manual_seed(gen_seed)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    model = model.float().eval()
    gen = torch.Generator().manual_seed(gen_seed)
    randomize(model, case.get("gemma_norm", False), gen)
    # Greedy decoding runs the full 8 steps: no eos, and no pad id to fill with.
    gc = model.generation_config
    for attr in ("eos_token_id", "bos_token_id", "pad_token_id"):
        if hasattr(gc, attr):
            setattr(gc, attr, None)
    return model, cfg, kwargs


def window_probe(case, overrides):
    """Which query positions a change at position 3 reaches in a one-layer sliding model: the
    receptive field of one layer is the window itself, so this shows how transformers counts
    it (keys j with i - j < window gives positions 3..3+window-1)."""
    o = dict(overrides)
    o["num_hidden_layers"] = 1
    if "layer_types" in o:
        o["layer_types"] = ["sliding_attention"]
    if "max_window_layers" in o:
        o["max_window_layers"] = 0
    model, cfg, _ = make_model(case, o, seed_of(case["name"]) + 7)
    gen = torch.Generator().manual_seed(99)
    ids = torch.randint(0, VOCAB, (1, SEQ), generator=gen)
    ids2 = ids.clone()
    ids2[0, 3] = (ids[0, 3] + 1) % VOCAB
    with torch.no_grad():
        a = model(ids).logits
        b = model(ids2).logits
    diff = (a - b).abs().amax(-1)[0]
    changed = [q for q in range(SEQ) if diff[q] > 1e-6]
    lt = cfg.to_dict().get("layer_types")
    return f"one-layer probe (layer_types {lt}): a change at position 3 reaches positions {changed}"


def mixtral_extras(model, cfg, input_ids, attention_mask, labels, out, t, facts):
    valid = attention_mask.bool()
    with torch.no_grad():
        moe = model(input_ids, attention_mask=attention_mask, labels=labels, output_router_logits=True)
        t["aux_loss"] = moe.aux_loss.float().reshape(())
        t["loss_with_aux"] = moe.loss.float().reshape(())
        margins = []
        for i, r in enumerate(moe.router_logits):
            r = r.float().reshape(-1, r.shape[-1])
            t[f"router_logits.{i}"] = r.contiguous()
            s = r.reshape(2, SEQ, -1)[valid].sort(-1, descending=True).values
            margins.append((s[:, 1] - s[:, 2]).min().item())
        facts.append(f"aux_loss {moe.aux_loss.item():.6f}; loss_with_aux {moe.loss.item():.6f} "
                     f"(= loss + {cfg.router_aux_loss_coef} * aux_loss: "
                     f"{out.loss.item() + cfg.router_aux_loss_coef * moe.aux_loss.item():.6f})")
        facts.append(f"router: smallest gap between 2nd and 3rd expert logit over valid tokens, per layer: "
                     f"{[round(m, 4) for m in margins]}")


def greedy_no_cache(model, prompt):
    ids = prompt.clone()
    with torch.no_grad():
        for _ in range(NEW_TOKENS):
            nxt = model(ids, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
    return ids


def write_keys(path, keys_txt, model):
    lines = []
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        saved = set(f.keys())
        for k in sorted(saved):
            sl = f.get_slice(k)
            lines.append(f"{k}\t{list(sl.get_shape())}\t{sl.get_dtype()}")
    count = len(lines)
    lines.append(f"# {count} tensors; metadata {meta}")
    # transformers may hold tensors under other names than it saves (fused experts, say)
    in_memory = {k: v for k, v in model.state_dict().items() if k not in saved}
    if in_memory:
        lines.append("# in memory (model.state_dict()) but not under this name in the file:")
        lines.extend(f"#   {k}\t{list(v.shape)}" for k, v in sorted(in_memory.items()))
    keys_txt.write_text("\n".join(lines) + "\n")
    return count, sorted(in_memory)


def save_model(model, folder):
    try:
        model.save_pretrained(folder, safe_serialization=True)
    except TypeError:
        # later transformers dropped the argument: safetensors is the only format
        model.save_pretrained(folder)


def run_case(case, outdir):
    facts = []
    name = case["name"]
    folder = outdir / name
    folder.mkdir(parents=True, exist_ok=True)
    overrides = case["cfg"]
    try:
        model, cfg, kwargs = make_model(case, overrides, seed_of(name))
    except Exception as e:  # noqa: BLE001
        if "fallback" not in case:
            raise
        facts.append(f"FIRST CHOICE FAILED ({type(e).__name__}: {e}); built the fallback config")
        overrides = case["fallback"]
        model, cfg, kwargs = make_model(case, overrides, seed_of(name))

    facts.append(f"class {type(model).__name__}; config class {type(cfg).__name__}")
    for m in config_mismatches(cfg, kwargs):
        facts.append(f"config changed what was asked: {m}")
    d = cfg.to_dict()
    for k in ("rope_parameters", "layer_types", "sliding_window", "use_sliding_window", "max_window_layers",
              "partial_rotary_factor", "head_dim", "query_pre_attn_scalar", "tie_word_embeddings"):
        if k in d:
            facts.append(f"config.{k} = {json.dumps(jsonable(d[k]))}")
    emb = model.get_input_embeddings().weight
    out_emb = model.get_output_embeddings()
    if out_emb is not None:
        facts.append(f"lm_head shares the embedding tensor in memory: {out_emb.weight is emb}")

    gen = torch.Generator().manual_seed(seed_of(name) + 1)
    input_ids = torch.randint(0, VOCAB, (2, SEQ), generator=gen, dtype=torch.int64)
    attention_mask = torch.ones(2, SEQ, dtype=torch.int64)
    attention_mask[1, SEQ - PAD_TAIL:] = 0
    labels = input_ids.clone()
    labels[attention_mask == 0] = -100

    t = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    with torch.no_grad():
        out = model(input_ids, attention_mask=attention_mask, labels=labels)
        t["logits"] = out.logits.float()
        t["loss"] = out.loss.float().reshape(())
        t["logits_unmasked"] = model(input_ids).logits.float()
        # HF's loss, recomputed by hand, so a silent change in its reduction shows up here
        lg = out.logits[:, :-1].reshape(-1, VOCAB).float()
        manual = torch.nn.functional.cross_entropy(lg, labels[:, 1:].reshape(-1), ignore_index=-100)
        facts.append(f"loss {out.loss.item():.6f} (mean CE over valid shifted tokens by hand: {manual.item():.6f})")
        valid = attention_mask.bool()
        facts.append(f"logits std over valid positions {out.logits[valid].std().item():.4f}, "
                     f"max |logit| {out.logits[valid].abs().max().item():.4f}")
    if case["model_type"] == "mixtral":
        try:
            mixtral_extras(model, cfg, input_ids, attention_mask, labels, out, t, facts)
        except Exception as e:  # noqa: BLE001
            facts.append(f"MIXTRAL AUX FAILED: {type(e).__name__}: {e}")
            print(traceback.format_exc(), flush=True)

    prompt = input_ids[:1, :PROMPT].clone()
    with torch.no_grad():
        g = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=NEW_TOKENS,
                           do_sample=False, use_cache=True,
                           return_dict_in_generate=True, output_logits=True)
    seqs = g.sequences
    t["generate_prompt"] = prompt
    t["generated"] = seqs
    step_logits = getattr(g, "logits", None) or getattr(g, "scores", None)
    if step_logits:
        sl = torch.cat([x.float() for x in step_logits], 0)
        t["generated_logits"] = sl
        top2 = sl.topk(2, -1).values
        facts.append(f"greedy: {seqs.shape[1] - PROMPT} new tokens, smallest top-1/top-2 logit gap "
                     f"{(top2[:, 0] - top2[:, 1]).min().item():.4f}")
    nocache = greedy_no_cache(model, prompt)
    facts.append(f"generate (with cache) equals a greedy loop without cache: {torch.equal(nocache, seqs)}")
    if not torch.equal(nocache, seqs):
        facts.append(f"  no-cache greedy gave {nocache.tolist()}; generate gave {seqs.tolist()}")

    for bname, buf in model.named_buffers():
        if "inv_freq" in bname and "original" not in bname:
            t[f"rope.{bname}"] = buf.float()
            facts.append(f"buffer {bname}: {list(buf.shape)} = {[round(x, 6) for x in buf.float().tolist()]}")
    for mname, mod in model.named_modules():
        if hasattr(mod, "attention_scaling") and "rotary" in mname:
            facts.append(f"{mname}.attention_scaling = {mod.attention_scaling}")

    save_model(model, folder)
    save_file({k: v.detach().clone().contiguous() for k, v in t.items()}, str(folder / "oracle.safetensors"))
    count, in_memory = write_keys(folder / "model.safetensors", folder / "keys.txt", model)
    facts.append(f"model.safetensors holds {count} tensors (full list in keys.txt)")
    if in_memory:
        shown = in_memory if len(in_memory) <= 6 else in_memory[:6] + ["..."]
        facts.append(f"in memory under names the file does not use: {shown}")
    try:
        # the saved checkpoint, loaded back by transformers, must give the same logits, or the
        # fixture would test the C# loader against weights nobody can load
        again = AutoModelForCausalLM.from_pretrained(str(folder), attn_implementation="eager").float().eval()
        with torch.no_grad():
            back = again(input_ids, attention_mask=attention_mask).logits
        facts.append(f"reloaded with from_pretrained: max |logits difference| {(back - t['logits']).abs().max().item():.3g}")
    except Exception as e:  # noqa: BLE001
        facts.append(f"RELOAD FAILED: {type(e).__name__}: {e}")

    if d.get("sliding_window") and (d.get("use_sliding_window", True)):
        try:
            facts.append(window_probe(case, overrides))
        except Exception as e:  # noqa: BLE001
            facts.append(f"window probe failed: {type(e).__name__}: {e}")
    return facts


# ---------------------------------------------------------------- tokenizers

CORPUS = """The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single step.
Machine learning models learn patterns from data; they do not memorize every example.
In 2024, the team trained 3 models on 1,250,000 tokens and reported 97.5% accuracy.
She said: "It's not what you think, it's what you do." They'll see, we've tried, I'm sure.
Tokenizers split text into pieces. Byte-level BPE never needs an unknown token.
def greet(name):
    return f"Hello, {name}!"

for i in range(10):
    print(i * i)

class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y
if (a != b && c >= d) { return x[i] + y[j]; }
{"key": "value", "list": [1, 2, 3], "nested": {"ok": true}}
SELECT name, COUNT(*) FROM users WHERE age > 21 GROUP BY name;
Café au lait, crème brûlée, naïve façade, jalapeño, Über, smörgåsbord, déjà vu.
Résumé: über-fast, ça va? Ñandú, Ærø, Øl.
The weather today is sunny with a chance of rain in the afternoon.
Numbers like 42, 007, 3.14159 and 2.71828 appear in many texts.
   Indented line with three spaces.
\tA tab-indented line.
Multiple    spaces    between    words.
UPPERCASE words and lowercase words and MixedCase Words.
Email: someone@example.com, URL: https://example.org/path?q=1&r=2.
The end of one paragraph.

The start of another paragraph, after an empty line.
Why? Because! Well... maybe; perhaps: certainly.
Small models are cheap to train and quick to test, which is why we use them here.
x = [n ** 2 for n in range(100) if n % 3 == 0]  # squares of multiples of three
while (count < 10) { count += 1; total = total * 2 - 1; }
<html><body><p class="note">Hello &amp; welcome</p></body></html>
The river flows past the old mill, where children used to play on summer evenings.
Prices rose by 12% in March, then fell by 4.5% in April; analysts were not surprised.
git commit -m "Fix the off-by-one error in the window mask" && git push origin main
"""

TEST_STRINGS = [
    "Hello world",
    " Hello world",
    "  two  spaces  and   three",
    "line one\nline two\n\nline four\n",
    "Numbers: 12345, 3.14159 and 1,000,000",
    "café résumé naïve",
    "中文字符测试",
    "emoji: 😀👍🏽 done",
    "def add(a, b):\n    return a + b\n",
    "\ttab\tseparated\tvalues",
    "I'm sure they'll say we've DONE it",
    "trailing space ",
    "   ",
    "",
    "Hello <|end_of_text|> world <|begin_of_text|>again",
    "<s>[INST] hi [/INST] there </s>",
    "<|im_start|>user\nhi<|im_end|>",
]

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
          "{% endif %}")

LLAMA2_CHAT = ("{% if messages[0]['role'] == 'system' %}{% set system_message = messages[0]['content'] %}"
               "{% set loop_messages = messages[1:] %}{% else %}{% set system_message = '' %}"
               "{% set loop_messages = messages %}{% endif %}"
               "{% for message in loop_messages %}{% if message['role'] == 'user' %}"
               "{% if loop.first and system_message %}{{ bos_token + '[INST] <<SYS>>\\n' + system_message + "
               "'\\n<</SYS>>\\n\\n' + message['content'] + ' [/INST]' }}"
               "{% else %}{{ bos_token + '[INST] ' + message['content'] + ' [/INST]' }}{% endif %}"
               "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + ' ' + eos_token }}"
               "{% endif %}{% endfor %}")

CHAT = [
    {"role": "system", "content": "You are brief."},
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "4."},
    {"role": "user", "content": "And café?"},
]

# Llama 3's pre-tokenizer split (GPT-4 style) followed by byte-level mapping without its own regex
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def hf_encodings(folder, extra=None):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(folder))
    rows = []
    for s in TEST_STRINGS:
        ids = tok(s, add_special_tokens=True)["input_ids"]
        ids_plain = tok(s, add_special_tokens=False)["input_ids"]
        row = {
            "text": s,
            "ids": ids,
            "ids_no_special": ids_plain,
            "tokens": tok.convert_ids_to_tokens(ids),
            "decoded": tok.decode(ids, skip_special_tokens=False),
            "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
        }
        if extra:
            row.update(extra(s))
        rows.append(row)
    chat = {"messages": CHAT}
    try:
        chat["text"] = tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
        enc = tok.apply_chat_template(CHAT, tokenize=True, add_generation_prompt=True)
        if isinstance(enc, dict) or hasattr(enc, "keys"):
            enc = enc["input_ids"]
        chat["ids"] = list(enc)
    except Exception as e:  # noqa: BLE001
        chat["error"] = f"{type(e).__name__}: {e}"
    info = {"tokenizer_class": type(tok).__name__, "vocab_size": len(tok),
            "bos": tok.bos_token, "bos_id": tok.bos_token_id, "eos": tok.eos_token, "eos_id": tok.eos_token_id}
    return {"info": info, "encodings": rows, "chat": chat}, tok


def build_bpe(folder):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    folder.mkdir(parents=True, exist_ok=True)
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>"]
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, min_frequency=1, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(CORPUS.splitlines(keepends=True), trainer)
    bos_id = tk.token_to_id("<|begin_of_text|>")
    tk.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos_id)]),
    ])
    tk.save(str(folder / "tokenizer.json"))
    errors = []
    # transformers 5 renamed the tokenizers-backed class; the older name is what hub files carry
    for cls in ("PreTrainedTokenizerFast", "TokenizersBackend"):
        (folder / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": cls,
            "bos_token": "<|begin_of_text|>",
            "eos_token": "<|end_of_text|>",
            "clean_up_tokenization_spaces": False,
            "model_max_length": 64,
            "chat_template": CHATML,
        }, indent=2))
        try:
            doc, _ = hf_encodings(folder)
            break
        except Exception as e:  # noqa: BLE001
            errors.append(f"tokenizer_class {cls}: {type(e).__name__}: {e}")
    else:
        raise RuntimeError("; ".join(errors))
    if errors:
        doc["info"]["load_errors"] = errors
    doc["info"]["trained_vocab"] = tk.get_vocab_size()
    (folder / "encodings.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False))
    return f"bpe: trained vocab {tk.get_vocab_size()}, loaded as {doc['info']['tokenizer_class']}"


def train_spm(folder):
    import sentencepiece as spm
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder.parent / "spm_corpus.txt"
    corpus.write_text(CORPUS)
    # Llama 2's trainer settings: BPE, byte fallback, digits split, whitespace kept as is
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(folder / "tokenizer"), vocab_size=400, hard_vocab_limit=False,
        model_type="bpe", byte_fallback=True, character_coverage=1.0, split_digits=True,
        allow_whitespace_only_pieces=True, remove_extra_whitespaces=False, add_dummy_prefix=True,
        normalization_rule_name="identity", unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>", minloglevel=2)
    corpus.unlink()
    (folder / "tokenizer.vocab").unlink(missing_ok=True)
    return spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model")), spm.__version__


def spm_variant(folder, sp, legacy):
    """Writes the transformers config for the .model in `folder` and what transformers and the
    sentencepiece library each make of the test strings."""
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "add_bos_token": True,
        "add_eos_token": False,
        "legacy": legacy,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 64,
        "chat_template": LLAMA2_CHAT,
    }, indent=2))

    def sp_row(s):
        return {"sentencepiece_ids": sp.encode(s), "sentencepiece_pieces": sp.encode(s, out_type=str),
                "sentencepiece_decoded": sp.decode(sp.encode(s))}

    note = f"{folder.name} (legacy {legacy}): sentencepiece vocab {sp.get_piece_size()}"
    try:
        doc, tok = hf_encodings(folder, sp_row)
        note += f", loaded by transformers as {doc['info']['tokenizer_class']}"
        differ = [r["text"] for r in doc["encodings"] if r["ids_no_special"] != r["sentencepiece_ids"]]
        note += (f"; transformers ids (add_special_tokens=False) equal the sentencepiece library's on "
                 f"{len(doc['encodings']) - len(differ)}/{len(doc['encodings'])} strings, differ on {differ!r}")
        # transformers' own conversion to tokenizer.json, kept beside the .model for comparison
        tmp = folder.parent / "_spm_saved"
        tok.save_pretrained(str(tmp))
        if (tmp / "tokenizer.json").exists():
            shutil.copy(tmp / "tokenizer.json", folder / "hf_converted_tokenizer.json")
            conv = json.loads((tmp / "tokenizer.json").read_text())
            note += (f"; its conversion: normalizer {json.dumps(conv.get('normalizer'))}, "
                     f"pre_tokenizer {json.dumps(conv.get('pre_tokenizer'))}")
        shutil.rmtree(tmp, ignore_errors=True)
    except Exception as e:  # noqa: BLE001
        note += f"; transformers could not load it: {type(e).__name__}: {e}"
        doc = {"info": {"transformers_error": f"{type(e).__name__}: {e}"},
               "encodings": [dict(text=s, **sp_row(s)) for s in TEST_STRINGS]}
    doc["info"]["sentencepiece_vocab"] = sp.get_piece_size()
    (folder / "encodings.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False))
    return note


def build_spm(folder):
    sp, version = train_spm(folder)
    notes = [f"spm: sentencepiece {version}"]
    notes.append(spm_variant(folder, sp, legacy=False))
    # The same .model under legacy true: transformers then converts it differently (the
    # difference shows around leading spaces and text after special tokens)
    legacy = folder.parent / "spm_legacy"
    legacy.mkdir(parents=True, exist_ok=True)
    shutil.copy(folder / "tokenizer.model", legacy / "tokenizer.model")
    notes.append(spm_variant(legacy, sp, legacy=True))
    return "\n- ".join(notes)


# ---------------------------------------------------------------- report

ORACLE_DOC = """Each `<case>/` holds what `save_pretrained` wrote (config.json, generation_config.json,
model.safetensors), `keys.txt` (every tensor of model.safetensors: name, shape, dtype) and
`oracle.safetensors`:

| tensor | dtype, shape | what |
| --- | --- | --- |
| input_ids | int64 [2,16] | random ids in [0, 200) |
| attention_mask | int64 [2,16] | row 0 all ones; row 1 ones then 5 zeros (right padding) |
| labels | int64 [2,16] | input_ids with padded positions -100 (transformers shifts them inside the loss) |
| logits | fp32 [2,16,200] | `model(input_ids, attention_mask=attention_mask).logits`; padded query positions still attend to the valid keys before them, so they are defined too |
| logits_unmasked | fp32 [2,16,200] | `model(input_ids).logits` (no mask) |
| loss | fp32 [] | transformers' loss for `labels=labels`: mean CE over the valid shifted tokens |
| generate_prompt | int64 [1,5] | input_ids[0,:5] |
| generated | int64 [1,13] | `generate(prompt, max_new_tokens=8, do_sample=False, use_cache=True)`, no eos: prompt + 8 tokens |
| generated_logits | fp32 [8,200] | the logits of each greedy step |
| rope.<buffer> | fp32 | the model's inv_freq buffers (RoPE frequencies after any scaling) |
| aux_loss, loss_with_aux | fp32 [] | Mixtral only: `output_router_logits=True`; loss_with_aux = loss + router_aux_loss_coef * aux_loss |
| router_logits.<layer> | fp32 [32,4] | Mixtral only: router logits per layer, tokens of both rows flattened |

Weights: transformers' init replaced (fixed seed per case): norm weights uniform in [0.5, 1.5]
(Gemma families, which scale by 1 + w: uniform in [-0.5, 0.5]), biases N(0, 0.1), embeddings
N(0, 0.2), Mixtral router N(0, 0.5), other weights N(0, 0.15). Models are fp32, eager attention,
CPU. Common sizes: vocab 200, hidden 64 (48 where noted), 2 layers (3 where noted), 4 query heads,
2 key/value heads, head_dim 16, intermediate 88, max_position_embeddings 64; pad, bos and eos ids
are unset so greedy generation never stops early.
"""


def versions_text():
    lines = [f"python {sys.version.split()[0]}", f"transformers {transformers.__version__}",
             f"torch {torch.__version__}"]
    for mod in ("safetensors", "tokenizers", "sentencepiece", "jinja2"):
        try:
            m = __import__(mod)
            lines.append(f"{mod} {getattr(m, '__version__', '?')}")
        except Exception as e:  # noqa: BLE001
            lines.append(f"{mod} missing ({type(e).__name__}: {e})")
    return "\n".join(lines) + "\n"


def folder_size(p):
    return sum(f.stat().st_size for f in Path(p).rglob("*") if f.is_file())


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: build_hf_fixtures.py OUTDIR")
    outdir = Path(sys.argv[1])
    outdir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
    (outdir / "hf_versions.txt").write_text(versions_text())

    report = ["# Hugging Face oracle fixtures", "",
              "Built by `test/oracle/build_hf_fixtures.py` with:", "", "```", versions_text().strip(), "```", "",
              ORACLE_DOC, "## Cases", ""]
    built, failed = [], []
    only = os.environ.get("ORACLE_ONLY")
    for case in CASES:
        if only and case["name"] not in only.split(","):
            continue
        name = case["name"]
        print(f"== {name}", flush=True)
        report.append(f"### {name} (`{case['model_type']}`)")
        report.append("")
        report.append(case["what"] + ".")
        report.append("")
        report.append(f"Config overrides over the common sizes: `{json.dumps(jsonable(case['cfg']))}`")
        report.append("")
        try:
            facts = run_case(case, outdir)
            built.append(name)
            report.extend(f"- {f}" for f in facts)
            report.append(f"- folder size {folder_size(outdir / name)} bytes")
            print("\n".join(facts), flush=True)
        except Exception as e:  # noqa: BLE001
            failed.append(name)
            tb = traceback.format_exc()
            print(tb, flush=True)
            report.append(f"- **FAILED**: `{type(e).__name__}: {e}`")
            report.append("")
            report.append("```")
            report.append(tb.strip()[-3000:])
            report.append("```")
            shutil.rmtree(outdir / name, ignore_errors=True)
        report.append("")

    report.append("## Tokenizers")
    report.append("")
    report.append("`tokenizers/bpe/`: byte-level BPE trained with the `tokenizers` library on the ~2 KB corpus in the "
                  "script (English, code, accented Latin), Llama 3's split regex then byte-level mapping, vocab "
                  "400 asked, specials `<|begin_of_text|>` (prepended by the post-processor), `<|end_of_text|>`, "
                  "`<|im_start|>`, `<|im_end|>`; tokenizer_config.json names bos/eos and a ChatML chat_template.")
    report.append("")
    report.append("`tokenizers/spm/`: SentencePiece BPE `tokenizer.model` (Llama 2 trainer settings: byte_fallback, "
                  "split_digits, identity normalization, dummy prefix, whitespace kept; vocab 400 asked with "
                  "hard_vocab_limit off because 256 byte pieces + 3 specials + every corpus character leave "
                  "~300 no room for merges); tokenizer_config.json: LlamaTokenizer, bos `<s>`, eos `</s>`, "
                  "legacy false, a Llama 2 `[INST]` chat_template. `hf_converted_tokenizer.json` is transformers' "
                  "own conversion of the .model. 中文 and emoji are not in the corpus, so they exercise byte "
                  "fallback. `tokenizers/spm_legacy/` is the same .model with `legacy: true`, to show how "
                  "that flag changes transformers' answer.")
    report.append("")
    report.append("Each `encodings.json`: `info`; `encodings`, one row per test string with `ids` "
                  "(`add_special_tokens=True`), `ids_no_special`, `tokens`, `decoded` (special tokens kept), "
                  "`decoded_skip_special` (and for spm the `sentencepiece_*` ids, pieces and decode of the "
                  "sentencepiece library itself); `chat`: the messages, the template's text with "
                  "add_generation_prompt and its ids.")
    report.append("")
    for label, fn in (("bpe", build_bpe), ("spm", build_spm)):  # spm also writes spm_legacy
        try:
            note = fn(outdir / "tokenizers" / label)
        except Exception as e:  # noqa: BLE001
            note = f"{label}: FAILED `{type(e).__name__}: {e}`"
            print(traceback.format_exc(), flush=True)
        print(note, flush=True)
        report.append(f"- {note}")
    report.append("")
    report.append("## Summary")
    report.append("")
    report.append(f"Built: {', '.join(built) or 'none'}. Failed: {', '.join(failed) or 'none'}. "
                  f"Total size {folder_size(outdir)} bytes.")
    (outdir / "CASES.md").write_text("\n".join(report) + "\n")
    print(f"built {built}; failed {failed}; {folder_size(outdir)} bytes", flush=True)


if __name__ == "__main__":
    main()
