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
def smollm2_tokenizer(request):
    """SmolLM2's tokenizer, read alone from the embedded model's cached copy when there is one (the weights
    then stay on disk), else from the loaded model."""
    from transformers import AutoTokenizer

    from tqstar.models.loader import embedded_gguf_path, gguf_cache_dir

    cached = gguf_cache_dir(embedded_gguf_path())
    if (cached / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(str(cached))
    return request.getfixturevalue("embedded").tokenizer


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2_tokenizer):
    """A tiny random Llama with SmolLM2's tokenizer."""
    from tiny import save_tiny_llama

    tokenizer = smollm2_tokenizer
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), tokenizer, seed=0,
                           eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
                           tie_word_embeddings=True)
