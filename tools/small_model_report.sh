#!/usr/bin/env bash
# Evaluate the bundled default model on the two frozen held-out test sets, against bicubic, the classical filter
# and (when the shipped model is the RL one) the SFT-only model:
#   bash tools/small_model_report.sh       # after tools/train_small_model.sh
# Test sets (built from runs/corpus/test: 11 face crops of 9 people, split off by photo before any training, never
# trained or tuned on), 4 seeded degradations per face at 128 px = 44 pairs each:
#   photo-128: the mild "photo" recipe (blur sigma 0.2-1, x2-x4, noise <= 8/255, JPEG 50-90)
#   paper-128: the paper's recipe scaled to 128 px (blur sigma 0.25-3.75, x1-x7.5, noise <= 20/255, JPEG 30-90)
# The models restore every LQ with 4 seeds (solution entropy). Results: runs/small/eval/, docs/reports/small-model/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
E=runs/small/eval
D=docs/reports/small-model
mkdir -p "$E" "$D"
M="--metrics psnr_y,ssim_y,psnr_rgb,id_dist_dlib,id_cos_dlib,lmd --no-fid"
for t in photo paper; do
  [ -d runs/testsets/$t-128 ] || "$PY" -m prefrestore make-testset runs/corpus/test -o runs/testsets/$t-128 \
    --preset $t --size 128 --scale-degradation --copies 4 --seed 12
  for m in bicubic classical; do
    [ -f $E/$t-$m/results.json ] || "$PY" -m prefrestore eval --data runs/testsets/$t-128 --model $m $M -o $E/$t-$m
  done
  runs="$E/$t-bicubic $E/$t-classical"
  if [ -d runs/small/rl-merged ]; then
    [ -f $E/$t-sft/results.json ] || "$PY" -m prefrestore eval --data runs/testsets/$t-128 --model runs/small/sft-only \
      --name sft-only --samples 4 $M -o $E/$t-sft
    runs="$runs $E/$t-sft"
  fi
  [ -f $E/$t-default/results.json ] || "$PY" -m prefrestore eval --data runs/testsets/$t-128 --model default \
    --name shipped --samples 4 $M -o $E/$t-default
  "$PY" -m prefrestore eval --compare $runs $E/$t-default --grid-rows 16 --by scale -o $E/$t-compare > /dev/null
  cp $E/$t-compare/compare.md "$D/compare-$t.md"
  "$PY" -c "from PIL import Image; Image.open('$E/$t-compare/grid.png').convert('RGB').save('$D/grid-$t.jpg', quality=88)"
done
cat "$D"/compare-*.md
