#!/usr/bin/env bash
# How many labelled patches of a new camera does fine-tuning need? A held-out synthetic "camera
# style" (darker, grainier, blurrier, stronger fall-off: outside the shipped model's training
# ranges) stands in for a user's camera. The shipped model is scored on it as is, then fine-tuned
# with `slmcnn train --init` on 100, 300 and 1000 of its patches and scored again.
set -euo pipefail
cd "$(dirname "$0")/.."
SLMCNN=${SLMCNN:-.venv/bin/slmcnn}
WORK=${WORK:-builds/finetune}
MODEL=${MODEL:-src/slmcnn/models/default.safetensors}
mkdir -p "$WORK"
cat > "$WORK/style.json" <<'JSON'
{"powder_level": [105, 140], "grain": [6.5, 9.0], "gamma": [1.2, 1.45], "blur": [0.9, 1.6],
 "falloff": [0.3, 0.45], "contrast": [0.75, 0.9], "perspective": 0.035}
JSON
for seed in $(seq 5000 5011); do
  "$SLMCNN" synth "$WORK/pool/$seed" --layers 6 --seed "$seed" --direction random --config "$WORK/style.json" --force >/dev/null
done
for seed in $(seq 6000 6005); do
  "$SLMCNN" synth "$WORK/test/$seed" --layers 6 --seed "$seed" --direction random --config "$WORK/style.json" --force >/dev/null
done
# a fixed random order of the pool's patches, so that the 100 are inside the 300 inside the 1000
python3 - "$WORK" <<'PY'
import csv, random, sys
from pathlib import Path
work = Path(sys.argv[1])
rows = []
for split in sorted(work.glob("pool/*/patches/split.csv")):
    for row in csv.DictReader(open(split)):
        row["path"] = str((split.parent / row["path"]).resolve())
        rows.append(row)
random.Random(0).shuffle(rows)
for n in (100, 300, 1000):
    with open(work / f"pool-{n}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label", "build", "layer", "row", "col"])
        writer.writeheader()
        for row in rows[:n]:
            writer.writerow({k: row[k] for k in writer.fieldnames})
PY
echo "zero-shot (shipped model, no fine-tuning):"
"$SLMCNN" evaluate "$MODEL" "$WORK"/test/600[0-4] --format md
for n in 100 300 1000; do
  echo "fine-tuned on $n patches:"
  "$SLMCNN" train "$WORK/pool-$n.csv" --init "$MODEL" --val "$WORK"/test/6005 --test "$WORK"/test/600[0-4] \
    --out "$WORK/runs/ft-$n" --epochs 15 --patience 5 --lr 1e-4 --quiet | tail -1
  cat "$WORK/runs/ft-$n/report.md" | tail -8
done
