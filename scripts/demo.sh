#!/usr/bin/env bash
# `make demo`: classify the example layers with the shipped model and explain a few patches.
set -euo pipefail
cd "$(dirname "$0")/.."
SLMCNN=.venv/bin/slmcnn
OUT=demo-out
if [ ! -f src/slmcnn/models/default.safetensors ]; then
  echo "missing: the shipped model src/slmcnn/models/default.safetensors (make it with scripts/train_default_model.sh)" >&2
  exit 1
fi
"$SLMCNN" predict-layer examples/layers --truth examples/masks --out "$OUT" --html --force
"$SLMCNN" predict-patches examples/patches --explain --out "$OUT/ig" --force
echo
echo "wrote:"
echo "  $OUT/index.html          each example layer beside its overlay, with error fractions and scores"
echo "  $OUT/*.overlay.png       overlays (white powder, blue object, red error)"
echo "  $OUT/*.json, summary.csv per-layer results"
echo "  $OUT/ig/*.ig.png         Integrated Gradients figures of the example patches"
