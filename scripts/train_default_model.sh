#!/usr/bin/env bash
# Re-makes the shipped default model from nothing but slmcnn's own commands and these seeds: the
# builds of scripts/synth_training_builds.sh, then three training stages. Their recoater direction is
# random, so training also turns patches by quarter turns (--turns). Writes builds to $WORK (default
# builds/default) and runs to $RUNS (default runs/default), then copies the model into the package.
# SKIP_SYNTH=1 reuses existing builds.
# Stage one: BUILDS, EPOCHS, SEED (first run's seed; SEEDS runs with seeds SEED, SEED+1, ...) and
# AUGMENT default to what made model v5: run none-1 of scripts/compare_augmentation.sh on an NVIDIA
# H100 (four runs sharing it, EPOCHS=60 TIME_LIMIT=3.3, which ended after 20 epochs with the cosine
# decayed to zero; EPOCHS=20 without a time limit is the same schedule up to that run's epoch-time
# estimates; GPU training is not bit-for-bit repeatable). DEVICE (auto: a CUDA GPU when PyTorch sees
# one) and TIME_LIMIT (minutes) pass to `train`; INIT (a model file) fine-tunes it instead of
# training from scratch, at LR (default 5e-4). On a 2-core CPU stage one takes many hours: use a GPU.
# Stage two fine-tunes run 1's model, unaugmented and without class weights (FINE_WEIGHTS=none:
# balanced weights raise the Error prior, and false Errors on sound layers of cameras it never saw
# with it), on the first FINE_BUILDS training builds for FINE_EPOCHS cosine epochs at FINE_LR
# (defaults 240, 4, 1e-4: what made v7 from v5, about 8 minutes on a 2-core CPU) into
# $RUNS/.../fine; FINE_EPOCHS=0 skips it. Stage three fine-tunes the model so far the same way on
# the LONG builds of 10 layers, where defects are seen as they age, for LONG_EPOCHS cosine epochs at
# LONG_LR (defaults 480, 3, 1e-4: what made v9 from v7, about 48 minutes on a 2-core CPU; v8 was
# LONG=240) into $RUNS/.../long; LONG_EPOCHS=0 skips it.
# BASE (a model file) skips stage one and fine-tunes that model: v9 from v7 on a 2-core CPU is
#   git show ef00bed:src/slmcnn/models/default.safetensors > v7.safetensors
#   BUILDS=240 BASE=v7.safetensors FINE_EPOCHS=0 scripts/train_default_model.sh
# (v7 itself from v5, git show 4bba8f6:..., with BUILDS=240 LONG_EPOCHS=0).
# SHIP=0 trains stage one only, without copying into the package (scripts/compare_augmentation.sh).
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
FINE_BUILDS=${FINE_BUILDS:-240}
FINE_EPOCHS=${FINE_EPOCHS:-4}
FINE_LR=${FINE_LR:-1e-4}
FINE_WEIGHTS=${FINE_WEIGHTS:-none}
LONG=${LONG:-480}
LONG_EPOCHS=${LONG_EPOCHS:-3}
LONG_LR=${LONG_LR:-1e-4}
limit=()
[ -z "${TIME_LIMIT:-}" ] || limit=(--time-limit "$TIME_LIMIT")
init=()
[ -z "${INIT:-}" ] || init=(--init "$INIT")

[ "$LONG_EPOCHS" -gt 0 ] || LONG=0  # no stage three: its long builds are not needed
[ -n "${SKIP_SYNTH:-}" ] || SLMCNN=$SLMCNN WORK=$WORK BUILDS=$BUILDS LONG=$LONG scripts/synth_training_builds.sh

first="$RUNS/run-1"
[ "$SEEDS" -gt 1 ] || first="$RUNS"
if [ -n "${BASE:-}" ]; then
  model=$BASE
else
  "$SLMCNN" train "$WORK"/train/* --val "$WORK"/val/* --test "$WORK"/test/* \
    --out "$RUNS" --runs "$SEEDS" --seed "$SEED" --lr "$LR" --schedule cosine --epochs "$EPOCHS" --patience 100 \
    --turns --augment "$AUGMENT" --device "$DEVICE" "${limit[@]}" "${init[@]}" --quiet --force
  [ "${SHIP:-1}" = 1 ] || exit 0  # SHIP=0: stage one only (scripts/compare_augmentation.sh)
  model="$first/model.safetensors"
fi

fine_tune() { # stage epochs lr builds...: fine-tune $model on the builds into $first/stage
  local stage=$1 epochs=$2 lr=$3
  shift 3
  "$SLMCNN" train "$@" --val "$WORK"/val/* --test "$WORK"/test/* \
    --out "$first/$stage" --seed "$SEED" --lr "$lr" --schedule cosine --epochs "$epochs" \
    --patience 100 --turns --augment none --class-weights "$FINE_WEIGHTS" --device "$DEVICE" --init "$model" \
    --quiet --force
  model="$first/$stage/model.safetensors"
}

if [ "$FINE_EPOCHS" -gt 0 ]; then
  mapfile -t fine_builds < <(printf '%s\n' "$WORK"/train/* | sort -V | head -n "$FINE_BUILDS")
  fine_tune fine "$FINE_EPOCHS" "$FINE_LR" "${fine_builds[@]}"
fi
[ "$LONG_EPOCHS" -eq 0 ] || fine_tune long "$LONG_EPOCHS" "$LONG_LR" "$WORK"/long/*

mkdir -p src/slmcnn/models
cp "$model" src/slmcnn/models/default.safetensors
echo "shipped: src/slmcnn/models/default.safetensors (from $model)"
