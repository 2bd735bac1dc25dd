#!/usr/bin/env bash
# Reproduce the bundled default model from scratch on a CPU (see src/prefrestore/assets/models/default/README.md):
#   bash tools/train_default_model.sh            # then: git diff --stat src/prefrestore/assets/models/default
# Data: the offline real faces (tools/build_offline_faces.py; test faces split off by photo before any training).
# Steps: stages 0-3 (configs/default/stage*.yaml), the sampling start picked on training faces
# (tools/pick_start_sigma.py), DiffusionNFT with offline rewards (configs/default/rl.yaml), LoRA merge, export with
# the shipped sampling settings. Every step resumes if re-run; wall times go to
# runs/default/times.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
mkdir -p runs/default
timed() {  # name, command...
  local name=$1; shift
  local t0; t0=$(date +%s)
  echo "== $name: $*"
  "$@"
  echo "$name wall_s=$(( $(date +%s) - t0 ))" | tee -a runs/default/times.txt
}
[ -f runs/offline_faces/manifest.json ] ||
  timed faces "$PY" tools/build_offline_faces.py --out runs/offline_faces --size 128 --copies 60
[ -d runs/default/rl_pairs ] ||
  timed rl-pairs "$PY" -m prefrestore make-testset runs/offline_faces/train -o runs/default/rl_pairs \
    --preset paper --size 128 --scale-degradation --seed 1
for s in 0 1 2 3; do
  [ -d "runs/default/default-stage$s/final" ] || timed "stage$s" "$PY" -m prefrestore train "configs/default/stage$s.yaml"
done
# the sampling start, picked on training faces (never the test faces); RL rollouts and the export use it
[ -f runs/default/start_sigma.json ] ||
  timed pick "$PY" tools/pick_start_sigma.py runs/default/default-stage3/final --faces runs/offline_faces/train \
    --out runs/default/start_sigma.json
S=$("$PY" -c "import json; print(json.load(open('runs/default/start_sigma.json'))['start_sigma'])")
[ -d runs/default/rl/checkpoints/epoch-000040 ] ||
  timed rl "$PY" -m prefrestore rl configs/default/rl.yaml "rollout.start_sigma=$S"
[ -d runs/default/rl-merged ] ||
  timed merge "$PY" -m prefrestore rl --merge runs/default/rl/checkpoints/epoch-000040/lora \
    --model runs/default/default-stage3/final -o runs/default/rl-merged
timed export "$PY" tools/export_default_model.py --rl runs/default/rl-merged --sft runs/default/default-stage3/final \
  --out src/prefrestore/assets/models/default --sft-out runs/default/sft-only --start-sigma "$S"
