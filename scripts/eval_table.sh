#!/usr/bin/env bash
# PSNR/SSIM (Y, crop = scale) of MODEL on Set5, Set14 and B100 at x2/x3/x4, next to the paper.
#   scripts/eval_table.sh bicubic            # the paper's "Bicubic" rows
#   scripts/eval_table.sh bundled            # the shipped seemore-tiny-x{2,3,4} weights
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-bicubic}
out=${2:-results}
mkdir -p "$out"
data=(../shared/data/benchmark/Set5 ../shared/data/benchmark/Set14 ../shared/data/benchmark/B100)
for s in 2 3 4; do
  m=$model
  [ "$model" = bundled ] && m=seemore-tiny-x$s
  seemore eval "$m" --data "${data[@]}" --scale $s --compare-paper --no-progress --json "$out/$model-x$s.json"
  echo
done
