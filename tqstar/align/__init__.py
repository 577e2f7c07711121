"""``tqstar align``: make an aligned baseline from a reference model and a reward, with DPO + LoRA.

1. Sample responses per prompt from the policy (the reference in round 1) and score them with the reward.
2. Keep the best and worst response of each prompt as a chosen/rejected pair, skipping near-ties.
   Pairs are appended to ``pairs.jsonl`` as they are made, so a killed run loses none of them.
3. Train a LoRA adapter with TRL's ``DPOTrainer``; checkpoints let a killed run resume.
4. Save the adapter with ``metadata.json`` (reference, reward, β, counts, curves, dev rewards) and plots.

With ``--pairs SOURCE`` round 1 trains on given preference pairs instead (the project's written pairs, whose
chosen answers decline harmful requests, teach what sampling from a model that never declines cannot).
With ``--rounds R`` (on-policy iterative DPO) steps 1–3 repeat: round r samples from the reference with
round r−1's adapter and trains that adapter further, against the same reference ρ_ref. Each round keeps
its files in ``round-r/`` and is done once; the last round's adapter is the one at the top of the output.

Modules: ``config`` (options, resumption checks, prompts per round), ``pairs`` (sampling and pairing,
dev reward), ``train`` (DPO with TRL), ``plots``, ``run`` (the recipe). Names load on first use.
"""

from ..lazy import lazy_getattr

_EXPORTS = {
    **dict.fromkeys(["AlignConfig", "MAX_ROUNDS", "check_same_run", "dev_source", "round_prompts"], "config"),
    **dict.fromkeys(["build_pairs", "given_pairs", "mean_reward"], "pairs"),
    **dict.fromkeys(["train_adapter", "dpo_arguments", "dpo_models"], "train"),
    "run_align": "run",
}

__getattr__ = lazy_getattr(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
