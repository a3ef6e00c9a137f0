#!/usr/bin/env bash
# Does camera augmentation help on photos of cameras the model never saw? The default model's
# stage-one recipe (scripts/train_default_model.sh: same builds, epochs and settings) with
# `--augment camera` and `--augment none`, two seeds each, because seed noise moves these figures as
# much as a recipe change. PARALLEL trainings run at once (default 1; 4 on a GPU with cores to
# spare). Each model is then measured by benchmarks/bench_real.py on PBLM and on the synthetic test
# builds unless BENCH=0 (PBLM is skipped with a message where ../shared/data/pblm is absent; LIMIT
# photos per folder, default 200), and all four by benchmarks/bench_styles.py on the unseen cameras'
# stand-ins ($RUNS/styles.txt). Writes builds to $WORK (default builds/default) and models + figures
# to $RUNS (default runs/compare/AUGMENT-SEED). SKIP_SYNTH=1 reuses existing builds; DEVICE,
# TIME_LIMIT, INIT and LR as in train_default_model.sh (INIT: compare the recipes as fine-tuning of
# that model, e.g. on a CPU: BUILDS=120 EPOCHS=3 LR=1e-4
# INIT=src/slmcnn/models/default.safetensors).
set -euo pipefail
cd "$(dirname "$0")/.."
SLMCNN=${SLMCNN:-.venv/bin/slmcnn}
PY=${PY:-.venv/bin/python}
WORK=${WORK:-builds/default}
RUNS=${RUNS:-runs/compare}
BUILDS=${BUILDS:-480}
EPOCHS=${EPOCHS:-20}
DEVICE=${DEVICE:-auto}
TIME_LIMIT=${TIME_LIMIT:-}
PARALLEL=${PARALLEL:-1}
BENCH=${BENCH:-1}
LIMIT=${LIMIT:-200}
LONG=${LONG:-0}  # stage one only: the long builds of stage three are not needed
export SLMCNN WORK BUILDS LONG EPOCHS DEVICE TIME_LIMIT INIT LR

[ -n "${SKIP_SYNTH:-}" ] || scripts/synth_training_builds.sh

train() { # augment seed: the default model's recipe itself (train_default_model.sh), not shipped
  RUNS="$RUNS/$1-$2" AUGMENT="$1" SEED="$2" SEEDS=1 SKIP_SYNTH=1 SHIP=0 scripts/train_default_model.sh \
    > "$RUNS/$1-$2.log" 2>&1
  echo "$1-$2: $(tail -n 1 "$RUNS/$1-$2.log")"
}
mkdir -p "$RUNS"
running=0
for seed in 0 1; do
  for augment in camera none; do
    train "$augment" "$seed" &
    running=$((running + 1))
    if [ "$running" -ge "$PARALLEL" ]; then wait -n; running=$((running - 1)); fi
  done
done
wait

[ "$BENCH" = 1 ] || exit 0
for run in "$RUNS"/camera-0 "$RUNS"/none-0 "$RUNS"/camera-1 "$RUNS"/none-1; do
  "$PY" benchmarks/bench_real.py --model "$run/model.safetensors" --limit "$LIMIT" --build "$WORK"/test/* \
    --json "$run/real.json" | tee "$run/real.txt"
done
"$PY" benchmarks/bench_styles.py --model "$RUNS"/camera-0/model.safetensors --model "$RUNS"/none-0/model.safetensors \
  --model "$RUNS"/camera-1/model.safetensors --model "$RUNS"/none-1/model.safetensors | tee "$RUNS/styles.txt"
