#!/usr/bin/env bash
# One adversarial round for the harmlessness reward model (docs/reward.md, "Measured when decoding"):
#   1. ARGS at α = 10 answers a file of training-split prompts under the shipped default reward
#      (resumable: rerun the same command after a kill);
#   2. its answers become preference pairs (scripts/reference_pairs.py --answers);
#   3. a reward model is trained on every shipped file plus those pairs (resumable);
#   4. the acceptance check scores the new model.
# The new model is not installed: compare it with the shipped one first, then copy its
# adapter_config.json, adapter_model.safetensors and metadata.json into tqstar/reward_models/harmless/.
#
#     scripts/adversarial_round.sh NAME PROMPTS.jsonl
#     scripts/adversarial_round.sh round2 scripts/prompts/adversarial-round2.jsonl
set -euo pipefail
name=${1:?usage: scripts/adversarial_round.sh NAME PROMPTS.jsonl}
prompts=${2:?usage: scripts/adversarial_round.sh NAME PROMPTS.jsonl}
pairs=tqstar/data/preferences/adversarial-$name.jsonl

tqstar eval --prompts "$prompts" --methods "args:alpha=10,label=args" --max-new-tokens 32 \
    --batch-size 16 --output "runs/adversarial-$name" --quiet
python scripts/reference_pairs.py --answers "runs/adversarial-$name" --prefix "adv-$name" --output "$pairs"
tqstar reward-model train --output "runs/rm-harmless-$name" --quiet
python scripts/acceptance_check.py --model "runs/rm-harmless-$name"
