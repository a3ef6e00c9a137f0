#!/usr/bin/env bash
# The synthetic builds the default model is trained, validated and tested on, made by slmcnn's own
# `synth` from fixed seeds: BUILDS training builds of 3 layers (seeds 1000...), LONG training builds
# of 10 layers (4000..., default 480), 6 validation builds of 6 layers (2000-2005) and 9 test builds
# of 10 layers (3000-3008), JOBS at a time (default: every core). Many short builds rather than a few
# long ones: every build draws its own camera look (dark to bright, grainy, JPEG, walls, light
# gradient), photo kind (after recoating or after exposure), bed scale, part mix and defects, and
# camera variety is what lets a model trained on synthetic layers read a camera it never saw. The
# long builds are for the last stage: a defect persists over layers (a streak fades, a swelling
# grows, a scratch stays) and a 3-layer build only ever shows it in its first three. Writes to $WORK
# (default builds/default).
set -euo pipefail
cd "$(dirname "$0")/.."
SLMCNN=${SLMCNN:-.venv/bin/slmcnn}
WORK=${WORK:-builds/default}
BUILDS=${BUILDS:-480}
LONG=${LONG:-480}
JOBS=${JOBS:-$(nproc)}

synth() { # split layers seed: one build, quietly
  "$SLMCNN" synth "$WORK/$1/$3" --layers "$2" --seed "$3" --direction random --force >/dev/null
}
export -f synth
export SLMCNN WORK
seq 1000 $((999 + BUILDS)) | xargs -P "$JOBS" -I{} bash -c 'synth train 3 {}'
[ "$LONG" -eq 0 ] || seq 4000 $((3999 + LONG)) | xargs -P "$JOBS" -I{} bash -c 'synth long 10 {}'
seq 2000 2005 | xargs -P "$JOBS" -I{} bash -c 'synth val 6 {}'
seq 3000 3008 | xargs -P "$JOBS" -I{} bash -c 'synth test 10 {}'
echo "builds: $BUILDS training, $LONG long training, 6 validation, 9 test in $WORK"
