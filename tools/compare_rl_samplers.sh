#!/usr/bin/env bash
# Issue 29: DiffusionNFT on the bundled small model with the official rollout sampler vs ours, side by side
# (configs/small/rl-sampler-compare.yaml; both runs at once, one thread each, the same seed and data).
#   EPOCHS=30 bash tools/compare_rl_samplers.sh      # then read runs/numerics/rl-compare.json
# Pairs: the un-augmented training faces of runs/corpus/train (tools/build_corpus.py), paper-preset degradation.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
CORPUS=${CORPUS:-runs/corpus/train}
EPOCHS=${EPOCHS:-30}
export OMP_NUM_THREADS=1
R=runs/numerics
mkdir -p $R
if [ ! -d $R/rl_pairs_paper ]; then
  rm -rf $R/rl_hq && mkdir -p $R/rl_hq
  for f in "$CORPUS"/*.png; do [[ $f =~ _a[0-9]+\.png$ ]] || cp "$f" $R/rl_hq/; done
  "$PY" -m prefrestore make-testset $R/rl_hq -o $R/rl_pairs_paper --preset paper --size 128 --scale-degradation --seed 1
fi
for s in official ours; do
  nice -n 10 "$PY" -m prefrestore rl configs/small/rl-sampler-compare.yaml rollout.sampler=$s \
    out_dir=$R/rl-$s epochs=$EPOCHS > $R/rl-$s.out 2>&1 &
done
wait
"$PY" - <<'PY'
import json
from pathlib import Path

R = Path("runs/numerics")
out = {}
for s in ("official", "ours"):
    rows = [json.loads(x) for x in (R / f"rl-{s}" / "log.jsonl").read_text().splitlines() if x.strip()]
    n = len(rows)
    q = max(1, n // 4)
    mean = lambda key, part: sum(r[key] for r in part) / len(part)  # noqa: E731
    out[s] = {"epochs": n, "optimiser_steps": rows[-1]["step"],
              "reward_first_quarter": mean("reward_mean", rows[:q]), "reward_last_quarter": mean("reward_mean", rows[-q:]),
              "loss_first_quarter": mean("loss", rows[:q]), "loss_last_quarter": mean("loss", rows[-q:]),
              "kl_last_quarter": mean("kl", rows[-q:]), "seconds_per_epoch": mean("time_rollout", rows)
              + mean("time_reward", rows) + mean("time_train", rows),
              "reward_curve": [round(r["reward_mean"], 4) for r in rows], "loss_curve": [round(r["loss"], 4) for r in rows]}
(R / "rl-compare.json").write_text(json.dumps(out, indent=1))
print(json.dumps({s: {k: v for k, v in d.items() if "curve" not in k} for s, d in out.items()}, indent=1))
PY
