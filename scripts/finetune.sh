#!/usr/bin/env bash
# Fine-tune through `accelerate launch`: the same command on CPU, one GPU or several.
#   scripts/finetune.sh --config configs/default.yaml --data runs/demo/data --output-dir runs/mine
#   NUM_PROCESSES=4 MIXED_PRECISION=bf16 scripts/finetune.sh --backbone facebook/wav2vec2-base ...
# Any `accelerate config` you saved is used for the rest (multi-node, DeepSpeed, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
NUM_PROCESSES=${NUM_PROCESSES:-1}
launch=(--num_processes "$NUM_PROCESSES" --num_machines 1 --dynamo_backend no
        --mixed_precision "${MIXED_PRECISION:-no}")
if [ "$NUM_PROCESSES" -gt 1 ]; then
  if "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    launch+=(--multi_gpu)
  else
    launch+=(--cpu)
  fi
fi
exec "$PY" -m accelerate.commands.launch "${launch[@]}" -m pipeline.cli train "$@"
