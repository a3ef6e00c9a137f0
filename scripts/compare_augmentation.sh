#!/usr/bin/env bash
# Does camera augmentation help on real photos? The same small recipe with `--augment none` and
# `--augment camera`, two seeds each (seed noise moves these figures as much as a recipe change),
# each model measured by benchmarks/bench_real.py on PBLM (30 photos per folder) and on 4 synthetic
# test builds. BUILDS builds of 3 layers (default 40), EPOCHS cosine epochs (default 4): small, so that
# four models fit beside the default model's training; about 3 minutes per model on 2 idle cores.
# Writes builds to $WORK (default builds/compare) and models + figures to $RUNS (default runs/compare).
set -euo pipefail
cd "$(dirname "$0")/.."
SLMCNN=${SLMCNN:-.venv/bin/slmcnn}
PY=${PY:-.venv/bin/python}
WORK=${WORK:-builds/compare}
RUNS=${RUNS:-runs/compare}
BUILDS=${BUILDS:-40}
EPOCHS=${EPOCHS:-4}

for seed in $(seq 1000 $((999 + BUILDS))); do "$SLMCNN" synth "$WORK/train/$seed" --layers 3 --seed "$seed" --direction random --force >/dev/null; done
for seed in 2000 2001 2002; do "$SLMCNN" synth "$WORK/val/$seed" --layers 6 --seed "$seed" --direction random --force >/dev/null; done
for seed in 3000 3001 3002 3003; do "$SLMCNN" synth "$WORK/test/$seed" --layers 6 --seed "$seed" --direction random --force >/dev/null; done

for seed in 0 1; do
  for augment in camera none; do
    out="$RUNS/$augment-$seed"
    "$SLMCNN" train "$WORK"/train/* --val "$WORK"/val/* --test "$WORK"/test/* --out "$out" --seed "$seed" \
      --lr 5e-4 --schedule cosine --epochs "$EPOCHS" --turns --augment "$augment" --quiet
    "$PY" benchmarks/bench_real.py --model "$out/model.safetensors" --limit 30 --build "$WORK"/test/* \
      --json "$out/real.json" | tee "$out/real.txt"
  done
done
