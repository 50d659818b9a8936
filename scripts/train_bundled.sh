#!/usr/bin/env bash
# Train the bundled SeemoRe-T weights on this machine (resumable: rerun to continue).
# x2 from scratch, then x3 and x4 fine-tuned from x2's best weights (the authors' order),
# the two fine-tunes side by side with one thread each.
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS_X2=${ITERS_X2:-2000}
ITERS_FT=${ITERS_FT:-500}
seemore train cpu --run runs/tiny-x2 --no-progress --set train.iterations="$ITERS_X2"
for s in 3 4; do
  seemore train cpu --run "runs/tiny-x$s" --no-progress \
    --set model.scale=$s --set train.iterations="$ITERS_FT" --set train.lr=5e-4 --set train.threads=1 \
    --set model.init_from=runs/tiny-x2/best.safetensors > "runs/train-x$s.log" 2>&1 &
done
wait
