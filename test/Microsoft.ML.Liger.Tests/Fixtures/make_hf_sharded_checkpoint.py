"""Writes the transformers-made sharded bf16 checkpoint CheckpointTests loads (Fixtures/hf-llama-bf16-sharded).

Run where torch and transformers are installed (our GPU host has both; no GPU is needed):
    python3 make_hf_sharded_checkpoint.py OUT_DIR
It writes OUT_DIR/hf-llama-bf16-sharded/: what save_pretrained wrote (config.json, the shards and
model.safetensors.index.json) and reference.safetensors, the same tensors written in one file by
safetensors' save_file, as an independent copy of the expected values.
"""
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

out = os.path.join(sys.argv[1], "hf-llama-bf16-sharded")
torch.manual_seed(1234)
config = LlamaConfig(vocab_size=61, hidden_size=32, intermediate_size=44, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=32,
                     tie_word_embeddings=True)
model = LlamaForCausalLM(config).to(torch.bfloat16)
with torch.no_grad():
    for p in model.parameters():
        p.normal_(0, 0.5)  # not the init's constants: ones in norms would hide a skipped tensor
model.save_pretrained(out, max_shard_size="15KB")
gen = os.path.join(out, "generation_config.json")
if os.path.exists(gen):
    os.remove(gen)
state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
save_file(state, os.path.join(out, "reference.safetensors"))
for name in sorted(os.listdir(out)):
    print(name, os.path.getsize(os.path.join(out, name)))
