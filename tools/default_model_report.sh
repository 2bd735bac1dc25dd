#!/usr/bin/env bash
# Evaluate the bundled default model on the frozen held-out test set, against bicubic and the SFT-only model:
#   bash tools/default_model_report.sh            # after tools/train_default_model.sh
# Test set (fixed before training, never trained or tuned on): the two faces tools/build_offline_faces.py splits off
# by photo (skimage's astronaut, pyiqa's Kodak kodim04), 4 seeded paper degradations each (scaled to 128 px) -> 8
# LQ/GT pairs in runs/default/testset. Every model restores each LQ with 4 seeds (solution entropy).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
R=runs/default/report
mkdir -p "$R"
if [ ! -d runs/default/testset ]; then
  rm -rf runs/default/testset_hq && mkdir -p runs/default/testset_hq
  for f in runs/offline_faces/test/*.png; do
    for k in 0 1 2 3; do cp "$f" "runs/default/testset_hq/$(basename "$f" .png)_d$k.png"; done
  done
  "$PY" -m prefrestore make-testset runs/default/testset_hq -o runs/default/testset --preset paper --seed 0 \
    --size 128 --scale-degradation
fi
M="--metrics psnr_y,ssim_y,psnr_rgb,id_dist_dlib,id_cos_dlib,lmd --no-fid"
"$PY" -m prefrestore eval --data runs/default/testset --model bicubic $M -o "$R/bicubic"
"$PY" -m prefrestore eval --data runs/default/testset --model runs/default/sft-only --name sft-only --samples 4 $M \
  -o "$R/sft-only"
"$PY" -m prefrestore eval --data runs/default/testset --model default --name default-rl --samples 4 $M \
  -o "$R/default"
"$PY" -m prefrestore eval --compare "$R/bicubic" "$R/sft-only" "$R/default" -o "$R/compare"
