#!/usr/bin/env bash
# The CPU-scale main study: e2e, layer-wise and progressive MoCo v3 on real
# CIFAR-10, two seeds (README.md beside this file). Resumable: a run whose
# summary.json exists is skipped, an interrupted one resumes from its
# checkpoints. Usage: experiments/cifar10_cpu/run.sh [RUNS_DIR] [PYTHON]
set -euo pipefail
runs=${1:-runs/c10cpu}
py=${2:-python}
if [ ! -d /tmp/c10cpu/train ]; then
  "$py" experiments/backbones/make_cifar_subset.py --out /tmp/c10cpu --train 1000 --test 500
fi
for seed in 0 1; do
  for mode in e2e layerwise progressive; do
    dir="$runs/${mode}_s${seed}"
    [ -f "$dir/summary.json" ] && continue
    start=$(date +%s)
    "$py" -m lwfedssl_jax.main --config "configs/cifar10_cpu.py:mode=$mode,seed=$seed" \
      --workdir "$dir"
    echo "$mode seed $seed: $(( $(date +%s) - start )) s" >> "$runs/wall_times.txt"
  done
done
