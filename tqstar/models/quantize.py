"""int8 dynamic quantisation of a transformers language model, for the rollout model on a CPU.

Rollouts are most of TQ*'s time and a rollout only has to be a good guess of what the baseline would
write, so a faster, slightly different baseline is a trade a user may choose (``--int8-baseline``): the
linear layers' weights become int8, activations are quantised on the fly (``torch.ao`` dynamic
quantisation, x86 and ARM CPUs). docs/benchmarks.md measures its speed and its effect on choices and reward.
"""

from __future__ import annotations

import warnings
import weakref

from ..errors import ConfigError
from .hf import HFLanguageModel


#: One quantised copy per source model, so that repeated ``Roles.load`` calls (a ``tqstar.generate`` per
#: call, a server's requests) quantise once; weak keys let a source model and its copy be freed together.
_COPIES: "weakref.WeakKeyDictionary[HFLanguageModel, HFLanguageModel]" = weakref.WeakKeyDictionary()


def int8_copy(lm) -> HFLanguageModel:
    """An ``HFLanguageModel`` over an int8-quantised copy of ``lm``'s weights; ``lm`` is untouched. Its
    ``source_network`` is ``lm``'s, whose weights the audit log fingerprints (packed int8 weights are not
    parameters)."""
    import torch

    if not isinstance(lm, HFLanguageModel):
        raise ConfigError(f"--int8-baseline quantises a local transformers model, but the baseline {lm.name!r} is "
                          "served remotely. Drop --int8-baseline, or quantise on the serving side.")
    if lm.device.type != "cpu":
        raise ConfigError(f"--int8-baseline is a CPU option (dynamic int8 kernels), but the baseline runs on "
                          f"{lm.device}. Drop it, or use --dtype bfloat16 / float16 on a GPU.")
    if lm in _COPIES:
        return _COPIES[lm]
    if lm.model.dtype != torch.float32:
        raise ConfigError(f"--int8-baseline quantises float32 weights, but the baseline {lm.name!r} is loaded in "
                          f"{lm.model.dtype}. Drop --dtype (float32 is the CPU default) or drop --int8-baseline.")
    with warnings.catch_warnings():
        # torch.ao's eager quantisation is deprecated in favour of torchao but still ships in the torch we pin
        # (2.13), with the fbgemm int8 CPU kernels this relies on; the warning would only alarm users
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        quantized = torch.ao.quantization.quantize_dynamic(lm.model, {torch.nn.Linear}, dtype=torch.qint8)
    copy = HFLanguageModel(quantized, lm.tokenizer, name=f"{lm.name}+int8", chat_template=lm.use_chat_template)
    copy.source_network = lm.model
    _COPIES[lm] = copy
    return copy
