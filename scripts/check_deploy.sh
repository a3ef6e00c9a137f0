#!/usr/bin/env bash
# Check deploy/ (docs/SCALING.md): the systemd unit, the image and the compose file.
#   bash scripts/check_deploy.sh            (from the repository's root, after `make test` made .venv)
# 1. tests/system/test_deploy.py: systemd-analyze verify of the unit, the compose file against the Compose
#    spec and the Dockerfile through hadolint (each where installed), and the unit's command line
#    started from an environment file, killed with kill -9, started again: every layer stored once.
# 2. Where a docker daemon and the compose plugin answer: the image is built, PostgreSQL and the
#    monitor m290-a are started from compose.yaml on a folder of generated layers, the monitor's
#    container's process is killed and restarted by its restart policy, and every layer is stored once.
#    Without them this part says that it did not run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PATH="$(dirname "$PY"):$PATH" "$PY" -m pytest tests/system/test_deploy.py -q -p no:cacheprovider

if ! docker info >/dev/null 2>&1 || ! docker compose version >/dev/null 2>&1; then
  echo "docker: no daemon or no compose plugin here; the image was not built and no container was started"
  exit 0
fi
work=$(mktemp -d)
project=slmcnn-check-$$
export SLMCNN_DB_PASSWORD=check$$ M290_A_CAMERA="$work/camera"
compose=(docker compose -p "$project" -f deploy/compose.yaml)
trap '"${compose[@]}" down -v >/dev/null 2>&1; rm -rf "$work"' EXIT
mkdir -p "$work/camera"
"$PY" -m slmcnn synth --out "$work/build" --layers 6 --size 384 --seed 3 --no-patches >/dev/null
"${compose[@]}" build m290-a
"${compose[@]}" up -d postgres m290-a
stored() {
  "${compose[@]}" exec -T postgres psql -U slmcnn -d shop -tAc \
    "SELECT count(*) FROM layers l JOIN builds b ON b.id = l.build_id WHERE b.machine = 'm290-a'" 2>/dev/null || echo 0
}
wait_for() {  # wait_for N: until N layers are stored (3 minutes at most)
  for _ in $(seq 180); do [ "$(stored)" -ge "$1" ] && return 0; sleep 1; done
  echo "check_deploy: only $(stored) of $1 layers stored"; "${compose[@]}" logs m290-a | tail -20; exit 1
}
feed() { for n in "$@"; do cp "$work/build/layers/$(printf %05d "$n").png" "$work/camera/.part" && mv "$work/camera/.part" "$work/camera/$(printf %05d "$n").png"; done; }
feed 1 2 3
wait_for 3
# a crash as the daemon sees one (docker kill would count as a stop): restart: on-failure starts it again
container=$("${compose[@]}" ps -q m290-a)
kill -9 "$(docker inspect -f '{{.State.Pid}}' "$container")"
feed 4 5 6
wait_for 6
[ "$(docker inspect -f '{{.RestartCount}}' "$container")" -ge 1 ] || { echo "check_deploy: not restarted"; exit 1; }
once=$("${compose[@]}" exec -T postgres psql -U slmcnn -d shop -tAc \
  "SELECT count(*) = count(DISTINCT file) FROM layers")
[ "$once" = t ] || { echo "check_deploy: a layer was stored twice"; exit 1; }
echo "docker: image built, PostgreSQL and monitor m290-a started, killed and started again: 6 layers, each stored once"
