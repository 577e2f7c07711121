"""Tiny random Llama models saved with a real tokenizer: transformers models that run in milliseconds."""

from pathlib import Path


def save_tiny_llama(path: Path, tokenizer, seed: int, num_layers: int = 2, **config) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    llama = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                        num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
                        max_position_embeddings=256, **config)
    LlamaForCausalLM(llama).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
