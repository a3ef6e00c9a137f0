#!/usr/bin/env bash
# Re-makes the shipped default model from nothing but slmcnn's own commands and these seeds: the
# builds of scripts/synth_training_builds.sh, then one training run. Their recoater direction is
# random, so training also turns patches by quarter turns (--turns). Writes builds to $WORK (default
# builds/default) and runs to $RUNS (default runs/default), then copies run 1's model into the
# package. SKIP_SYNTH=1 reuses existing builds. BUILDS, EPOCHS, SEED (first run's seed; SEEDS runs
# with seeds SEED, SEED+1, ...) and AUGMENT default to what made the shipped model v5: run none-1 of
# scripts/compare_augmentation.sh on an NVIDIA H100 (four runs sharing it, EPOCHS=60 TIME_LIMIT=3.3,
# which ended after 20 epochs with the cosine decayed to zero; EPOCHS=20 without a time limit is the
# same schedule up to that run's epoch-time estimates; GPU training is not bit-for-bit repeatable).
# DEVICE (auto: a CUDA GPU when PyTorch sees one) and TIME_LIMIT (minutes) pass to `train`; INIT (a
# model file) fine-tunes it instead of training from scratch, at LR (default 5e-4); SHIP=0
# trains without copying the model into the package (compare_augmentation.sh). On a
# 2-core CPU the default recipe takes many hours: use a GPU, or fewer BUILDS and EPOCHS.
set -euo pipefail
cd "$(dirname "$0")/.."
SLMCNN=${SLMCNN:-.venv/bin/slmcnn}
WORK=${WORK:-builds/default}
RUNS=${RUNS:-runs/default}
BUILDS=${BUILDS:-480}
EPOCHS=${EPOCHS:-20}
SEED=${SEED:-1}
SEEDS=${SEEDS:-1}
AUGMENT=${AUGMENT:-none}
DEVICE=${DEVICE:-auto}
LR=${LR:-5e-4}
limit=()
[ -z "${TIME_LIMIT:-}" ] || limit=(--time-limit "$TIME_LIMIT")
init=()
[ -z "${INIT:-}" ] || init=(--init "$INIT")

[ -n "${SKIP_SYNTH:-}" ] || SLMCNN=$SLMCNN WORK=$WORK BUILDS=$BUILDS scripts/synth_training_builds.sh

"$SLMCNN" train "$WORK"/train/* --val "$WORK"/val/* --test "$WORK"/test/* \
  --out "$RUNS" --runs "$SEEDS" --seed "$SEED" --lr "$LR" --schedule cosine --epochs "$EPOCHS" --patience 100 \
  --turns --augment "$AUGMENT" --device "$DEVICE" "${limit[@]}" "${init[@]}" --quiet --force

[ "${SHIP:-1}" = 1 ] || exit 0  # SHIP=0: train only (scripts/compare_augmentation.sh)
first="$RUNS/run-1"
[ "$SEEDS" -gt 1 ] || first="$RUNS"
mkdir -p src/slmcnn/models
cp "$first/model.safetensors" src/slmcnn/models/default.safetensors
echo "shipped: src/slmcnn/models/default.safetensors (from $first)"
