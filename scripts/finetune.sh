#!/usr/bin/env bash
# Fine-tune through `accelerate launch`: the same command on CPU, one GPU or several.
#   scripts/finetune.sh --config configs/default.yaml --data runs/demo/data --output-dir runs/mine
#   NUM_PROCESSES=4 MIXED_PRECISION=bf16 scripts/finetune.sh --backbone facebook/wav2vec2-base ...
#   ACCELERATE_CONFIG=multinode.yaml scripts/finetune.sh ...
# Only what these variables ask for is passed to `accelerate launch`: everything else comes from
# the `accelerate config` you saved (or ACCELERATE_CONFIG): machines, DeepSpeed, FSDP, mixed
# precision; without one, accelerate's defaults (one process, fp32).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
if ! "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
  # No GPU: accelerate's processes (torchrun's, for --multi_gpu or a saved multi-process config)
  # run on the CPU and talk over gloo; without this each would train alone, as the only process.
  export ACCELERATE_USE_CPU=true
fi
launch=()
if [ -n "${ACCELERATE_CONFIG:-}" ]; then
  launch+=(--config_file "$ACCELERATE_CONFIG")
fi
if [ -n "${NUM_PROCESSES:-}" ]; then
  launch+=(--num_processes "$NUM_PROCESSES")
  if [ "$NUM_PROCESSES" -gt 1 ]; then
    launch+=(--multi_gpu)  # torchrun's processes: one per GPU, or on the CPU (above)
  fi
fi
if [ -n "${MIXED_PRECISION:-}" ]; then
  launch+=(--mixed_precision "$MIXED_PRECISION")
fi
exec "$PY" -m accelerate.commands.launch "${launch[@]}" -m pipeline.cli train "$@"
