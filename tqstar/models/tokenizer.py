"""The text side shared by the transformers and the remote backends: one tokenizer, one chat template,
so that a local and a served model of one family exchange token ids."""

from __future__ import annotations

import zlib
from typing import Sequence


class ChatTokenizer:
    """``encode_prompt``, ``encode``, ``decode`` and ``vocabulary`` of the ``LanguageModel`` protocol over a
    transformers tokenizer; prompts go through its chat template when it has one (and ``chat_template``)."""

    def __init__(self, tokenizer, chat_template: bool = True):
        self.tokenizer = tokenizer
        self.use_chat_template = chat_template and getattr(tokenizer, "chat_template", None) is not None
        self.vocabulary = vocabulary_id(tokenizer)

    def encode_prompt(self, prompt: str) -> list[int]:
        if self.use_chat_template:
            messages = [{"role": "user", "content": prompt}]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self.tokenizer(prompt)["input_ids"]

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def decode(self, token_ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)


def vocabulary_id(tokenizer) -> str:
    """Equal for tokenizers that share token ids: class, size and a checksum of a few token strings."""
    probe = [0, 1, 2, 100, 1000, len(tokenizer) // 2, len(tokenizer) - 1]
    tokens = tokenizer.convert_ids_to_tokens([i for i in probe if i < len(tokenizer)])
    return f"{type(tokenizer).__name__}:{len(tokenizer)}:{zlib.crc32(chr(0).join(map(str, tokens)).encode())}"
