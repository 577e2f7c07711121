import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import pytest


@pytest.fixture(scope="session")
def embedded():
    """The embedded SmolLM2 model (dequantised once per machine, then cached)."""
    from tqstar.models import load_language_model

    return load_language_model("smollm2")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, embedded):
    """A tiny random Llama with SmolLM2's tokenizer."""
    from tiny import save_tiny_llama

    tokenizer = embedded.tokenizer
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), tokenizer, seed=0,
                           eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
                           tie_word_embeddings=True)
