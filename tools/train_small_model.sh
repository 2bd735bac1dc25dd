#!/usr/bin/env bash
# Reproduce the bundled default model ("small" preset) from scratch on a CPU:
#   bash tools/train_small_model.sh            # then: git diff --stat src/prefrestore/assets/models/default
#   RL=1 bash tools/train_small_model.sh       # the same, plus DiffusionNFT on the SFT model, which is then shipped
# Data: tools/build_corpus.py (real faces from every offline source, test faces split off by photo before any
# training, plus natural-photo crops). Steps: stage 0 (autoencoder), then in parallel stage 3a -> 3b -> 3c -> 3d (the
# autoencoder, given an LQ skip into its decoder, learns to restore: encoder to HQ latents + pixel loss, decoder and
# skip too; 3a on 64 px windows, 3b-3d on whole faces, 3c and 3d each a new cosine) and stages 1 -> 2 (integrator,
# then SANA on the stage-0 latents); graft 3d's autoencoder into the stage-2 model; pick the sampling start on training
# faces; export (the SFT model, or with RL=1: DiffusionNFT with offline rewards, merged); calibrate the fidelity dial
# on training faces. Every step resumes if re-run (the trainers' exact resume); wall times go to
# runs/small/times.txt. Threads: one per process while two trainers run at once on 2 cores; stages 3b-3d (alone
# by then) take both.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=1
R=runs/small
mkdir -p $R
timed() {  # name, command...
  local name=$1; shift
  local t0; t0=$(date +%s)
  echo "== $name: $*"
  "$@"
  echo "$name wall_s=$(( $(date +%s) - t0 ))" | tee -a $R/times.txt
}
train() { [ -d "$R/${2:-small-$1}/final" ] || timed "$1" "$PY" -m prefrestore train "configs/small/$1.yaml"; }

[ -f runs/corpus/manifest.json ] || timed corpus "$PY" tools/build_corpus.py --out runs/corpus
train stage0
[ -d $R/stage0-skip ] || "$PY" tools/graft_autoencoder.py --model $R/small-stage0/final --lq-skip-levels 2 -o $R/stage0-skip
{ train stage3a small-stage3a-skip > $R/stage3a.log 2>&1 && train stage3b > $R/stage3b.log 2>&1 &&
  train stage3c > $R/stage3c.log 2>&1 &&
  train stage3d > $R/stage3d.log 2>&1; } &
A=$!
train stage1
train stage2
wait $A
[ -d $R/grafted ] || timed graft "$PY" tools/graft_autoencoder.py --model $R/small-stage2/final_ema \
  --autoencoder $R/small-stage3d/final -o $R/grafted
# the 118 un-augmented training faces, and fixed degradations of them: RL prompts, stage-3 checks
# (tools/ae_ceiling.py --pairs), the sampling pick and the fidelity calibration
if [ ! -d $R/rl_pairs_photo ]; then
  rm -rf $R/rl_hq && mkdir -p $R/rl_hq
  for f in runs/corpus/train/*.png; do [[ $f =~ _a[0-9]+\.png$ ]] || cp "$f" $R/rl_hq/; done
  for p in paper photo; do
    "$PY" -m prefrestore make-testset $R/rl_hq -o $R/rl_pairs_$p --preset $p --size 128 --scale-degradation --seed 1
  done
fi
# stage 4 (ours, issue 28): the grafted model's autoencoder fine-tuned for what people see (LPIPS-Alex, dlib identity,
# pixel and latent losses), to its step 300; stage 4b goes on from there with the identity loss 4x stronger, 500 steps
[ -d $R/small-stage4/checkpoints/step-00000300 ] || timed stage4 "$PY" -m prefrestore train configs/small/stage4.yaml threads=2
C=$R/small-stage4b/checkpoints
[ -d $R/small-stage4b/final ] || timed stage4b "$PY" -m prefrestore train configs/small/stage4b.yaml threads=2
# the average of stage 4b's steps 100 and 250 ... 500 (configs/small/stage4b.yaml says why; shipped with the flip
# ensemble, SamplingDefaults.flip_ensemble, from 2026-12-08 until stage 4e). Picked on the training faces (runs/small/rl_pairs_{photo,paper}): of the
# candidates >= 0.45 dB PSNR-Y above the classical filter on both recipes (the WiSE-FT mixes 0.3 x the grafted 3d
# model + 0.7 x an average, and the averages with the ensemble), the lowest LPIPS-VGG + dlib distance. Numbers: the
# model card.
B=$R/stage4b-avg500
[ -d $B ] || "$PY" tools/average_checkpoints.py $C/step-00000{100,250,300,350,400,450,500}/model -o $B
# stage 4e (configs/small/stage4e-alexvgg.yaml): 300 more steps from that average with LPIPS on AlexNet and VGG16;
# its average of steps 100-300 mixed half and half with the 4b average is shipped (picked on the training faces by
# the same floor, then the lowest LPIPS-VGG + LPIPS-Alex + dlib; the 4e average alone fell 0.002 dB under the floor)
[ -d $R/small-stage4e-alexvgg/final ] || timed stage4e "$PY" -m prefrestore train configs/small/stage4e-alexvgg.yaml
E=$R/small-stage4e-alexvgg/checkpoints
[ -d $R/stage4e-avg ] || "$PY" tools/average_checkpoints.py $E/step-00000{100,150,200,250,300}/model -o $R/stage4e-avg
SFT=$R/stage4be-mix
[ -d $SFT ] || "$PY" tools/average_checkpoints.py $B $R/stage4e-avg -o $SFT
# sampling (start sigma x steps), picked on the training faces by LPIPS and identity under a PSNR floor
[ -f $R/sampling.json ] ||
  timed pick "$PY" tools/pick_start_sigma.py $SFT --faces $R/rl_hq --presets paper photo \
    --candidates 0.02 0.05 0.1 --steps 4 --limit 32 --threads 2 --out $R/sampling.json
S=$("$PY" -c "import json; print(json.load(open('$R/sampling.json'))['start_sigma'])")
N=$("$PY" -c "import json; print(json.load(open('$R/sampling.json'))['steps'])")
SHIP=$SFT  # RL=0: the SFT model
if [ "${RL:-0}" = 1 ]; then
  [ -d $R/rl/checkpoints/epoch-000020 ] || timed rl "$PY" -m prefrestore rl configs/small/rl.yaml "rollout.start_sigma=$S"
  [ -d $R/rl-merged ] || timed merge "$PY" -m prefrestore rl --merge $R/rl/checkpoints/epoch-000020/lora \
    --model $SFT -o $R/rl-merged
  SHIP=$R/rl-merged
fi
timed export "$PY" tools/export_default_model.py --rl $SHIP --sft $SFT \
  --out src/prefrestore/assets/models/default --sft-out $R/sft-only --start-sigma "$S" --steps "$N" --flip-ensemble
timed calibrate "$PY" tools/calibrate_fidelity.py --model default --faces $R/rl_hq
