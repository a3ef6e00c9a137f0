#!/usr/bin/env bash
# Re-makes the shipped default model from nothing but slmcnn's own commands and these seeds.
# Many short builds rather than a few long ones: every build draws its own camera, light and part mix,
# and camera variety is what lets a model trained on synthetic layers read a camera it never saw
# (240 builds of 3 layers). Their recoater direction is random, so training also turns patches by
# quarter turns (--turns), not only flips them.
# Writes builds to $WORK (default builds/default) and runs to $RUNS (default runs/default), then
# copies run 1's model into the package. SKIP_SYNTH=1 reuses existing builds.
set -euo pipefail
cd "$(dirname "$0")/.."
SLMCNN=${SLMCNN:-.venv/bin/slmcnn}
WORK=${WORK:-builds/default}
RUNS=${RUNS:-runs/default}

if [ -z "${SKIP_SYNTH:-}" ]; then
  for seed in $(seq 1000 1239); do
    "$SLMCNN" synth "$WORK/train/$seed" --layers 3 --seed "$seed" --direction random --force
  done
  for seed in $(seq 2000 2005); do
    "$SLMCNN" synth "$WORK/val/$seed" --layers 6 --seed "$seed" --direction random --force
  done
  for seed in $(seq 3000 3008); do
    "$SLMCNN" synth "$WORK/test/$seed" --layers 10 --seed "$seed" --direction random --force
  done
fi

"$SLMCNN" train "$WORK"/train/* --val "$WORK"/val/* --test "$WORK"/test/* \
  --out "$RUNS" --runs 3 --seed 0 --lr 5e-4 --schedule cosine --epochs 10 --patience 20 --turns --quiet

mkdir -p src/slmcnn/models
cp "$RUNS/run-1/model.safetensors" src/slmcnn/models/default.safetensors
echo "shipped: src/slmcnn/models/default.safetensors (from $RUNS/run-1)"
