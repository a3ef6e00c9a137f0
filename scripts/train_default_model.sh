#!/usr/bin/env bash
# Re-makes the shipped default model from nothing but slmcnn's own commands and these seeds.
# Writes builds to $WORK (default builds/default) and the runs to $RUNS (default runs/default),
# then copies run 1's model into the package. SKIP_SYNTH=1 reuses existing builds.
set -euo pipefail
cd "$(dirname "$0")/.."
SLMCNN=${SLMCNN:-.venv/bin/slmcnn}
WORK=${WORK:-builds/default}
RUNS=${RUNS:-runs/default}

if [ -z "${SKIP_SYNTH:-}" ]; then
for seed in 101 102 103 104 105 106; do
  "$SLMCNN" synth "$WORK/train-$seed" --layers 40 --seed "$seed" --direction random --force
done
"$SLMCNN" synth "$WORK/val-201" --layers 30 --seed 201 --direction random --force
for seed in 301 302 303; do
  "$SLMCNN" synth "$WORK/test-$seed" --layers 30 --seed "$seed" --direction random --force
done
fi

"$SLMCNN" train "$WORK"/train-* --val "$WORK/val-201" --test "$WORK"/test-* \
  --out "$RUNS" --runs 3 --seed 0 --lr 5e-4 --epochs 20 --patience 5 --quiet

mkdir -p src/slmcnn/models
cp "$RUNS/run-1/model.safetensors" src/slmcnn/models/default.safetensors
echo "shipped: src/slmcnn/models/default.safetensors (from $RUNS/run-1)"
