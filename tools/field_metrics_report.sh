#!/usr/bin/env bash
# Evaluate bundled-model candidates on the two frozen held-out test sets, against bicubic, the classical filter and
# Real-ESRGAN x4plus (x4 on the 128 px LQ, area back to 128), with the field's metrics:
#   bash tools/field_metrics_report.sh [NAME=MODEL ...]     # default: bundled-3d=default
# Test sets (built from runs/corpus/test: 11 face crops of 9 people, split off by photo before any training, never
# trained or tuned on), 4 seeded degradations per face at 128 px = 44 pairs each:
#   photo-128: the mild "photo" recipe (blur sigma 0.2-1, x2-x4, noise <= 8/255, JPEG 50-90)
#   paper-128: the paper's recipe scaled to 128 px (blur sigma 0.25-3.75, x1-x7.5, noise <= 20/255, JPEG 30-90)
# Two passes per method: restore (prefrestore eval --model, PSNR only; skipped when its restored/ exists), then score
# the restorations (prefrestore eval --restored) with PSNR-Y, SSIM-Y, PSNR-RGB, LPIPS-Alex/VGG, dlib distance (the
# dlib package) and MobileFace cosine / degrees (the judge: the identity loss of stage 4 is dlib's network, so
# MobileFace is the independent one). Needs `prefrestore weights fetch all` and `prefrestore convert-realesrgan
# --download`. Real-ESRGAN takes ~15-20 s per face on a CPU core. Results: runs/small/eval/, docs/reports/field-metrics/.
# The tables carry paired differences (eval --compare --paired) from bicubic, the classical filter and Real-ESRGAN: per image, with
# a 95% interval from resampling the 11 source faces, so a difference inside the set's own noise reads as a tie.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
E=runs/small/eval
S=runs/small/scores
D=docs/reports/field-metrics
mkdir -p "$E" "$S" "$D"
M="--metrics psnr_y,ssim_y,psnr_rgb,lpips_alex,lpips_vgg,id_dist_dlib,id_mobileface,deg_mobileface --no-fid"
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(bundled-3d=default)
for t in photo paper; do
  [ -d runs/testsets/$t-128 ] || "$PY" -m prefrestore make-testset runs/corpus/test -o runs/testsets/$t-128 \
    --preset $t --size 128 --scale-degradation --copies 4 --seed 12
  runs=""
  grid=()
  for spec in bicubic=bicubic classical=classical realesrgan=realesrgan "${models[@]}"; do
    name=${spec%%=*}; model=${spec#*=}
    [ -d $E/$t-$name/restored ] || "$PY" -m prefrestore eval --data runs/testsets/$t-128 --model "$model" \
      --name "$name" --metrics psnr_y --no-fid -o $E/$t-$name
    [ -f $S/$t-$name/results.json ] || "$PY" -m prefrestore eval --restored $E/$t-$name/restored \
      --gt runs/testsets/$t-128/gt --name "$name" $M -o $S/$t-$name
    runs="$runs $S/$t-$name"
    case $name in bicubic | classical | realesrgan) ;; *) grid+=("$E/$t-$name") ;; esac
  done
  rm -rf $S/$t-compare
  "$PY" -m prefrestore eval --compare $runs --grid-rows 16 --paired -o $S/$t-compare > /dev/null
  # the models against the classical filter and Real-ESRGAN too, paired
  ours=""
  for spec in "${models[@]}"; do ours="$ours $S/$t-${spec%%=*}"; done
  { echo "# Held-out $t set ($t-128: 44 LQ/GT pairs of 11 faces, 9 people)"; tail -n +2 $S/$t-compare/compare.md
    for base in classical realesrgan; do
      echo; "$PY" -m prefrestore eval --compare $S/$t-$base $ours --paired | sed -n '/^## Paired/,$p'
    done; } > "$D/compare-$t.md"
  # the grid: 16 faces, LQ | bicubic | Real-ESRGAN | each model | GT (from the restore passes, which know the LQs)
  rm -rf $S/$t-grid
  "$PY" -m prefrestore eval --compare $E/$t-bicubic $E/$t-realesrgan "${grid[@]}" --grid-rows 16 -o $S/$t-grid > /dev/null
  "$PY" -c "from PIL import Image; Image.open('$S/$t-grid/grid.png').convert('RGB').save('$D/grid-$t.jpg', quality=85)"
done
cat "$D"/compare-*.md
