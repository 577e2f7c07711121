"""The transformers backend's prefix state: the KV cache of a batch of prefixes, and how the next batch of
prefixes reuses it.

Each decoding step asks a model about its states again, every prefix grown by what the step committed: one
token for the token decoder, a block of B tokens for the blockwise one, and for a rollout model the prefix
of each candidate block (B − 1 tokens past its state). Matching every new prefix to the longest cached
prefix it extends lets only the tokens past it run through the model, never the whole prefix again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass
class PrefixState:
    """KV cache and last logits of a batch of left-padded prefixes. Rows extended by fewer tokens than their
    batch-mates carry masked gaps in the cache; explicit position ids keep their positions contiguous."""

    prefixes: list[tuple[int, ...]]
    cache: object  # transformers DynamicCache, batch axis = len(prefixes)
    attention_mask: torch.Tensor  # (B, L) 1 on real tokens, 0 on left padding and gaps
    next_position: torch.Tensor  # (B,) position id of the next token
    last_logits: torch.Tensor  # (B, V) logits for the next token, float32


def extension_plan(cached: Sequence[tuple[int, ...]], keys: Sequence[tuple[int, ...]]
                   ) -> tuple[list[int], list[tuple[int, ...]]] | None:
    """``(rows, new)`` with ``keys[i] == cached[rows[i]] + new[i]``, each key matched to the longest cached
    prefix it extends (``new[i]`` may be empty); None when some key extends no cached prefix."""
    row_of = {key: row for row, key in enumerate(cached)}
    lengths = sorted({len(key) for key in cached if key}, reverse=True)  # few: the rows share a length or two
    rows, new = [], []
    for key in keys:
        row = next((row_of[key[:n]] for n in lengths if n <= len(key) and key[:n] in row_of), None)
        if row is None:
            return None
        rows.append(row)
        new.append(key[len(cached[row]):])
    return rows, new


def right_padded(rows: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, M) token ids padded on the right with ``pad``, and the (R, M) long mask of the real ones."""
    width = max(1, max(len(r) for r in rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    valid = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        valid[i, :len(row)] = 1
    return ids, valid
