#!/usr/bin/env bash
# Train the bundled SeemoRe-T weights on this machine (resumable: rerun to continue).
# x2 from scratch, then x3 and x4 fine-tuned from x2's weights (the authors' order),
# the two fine-tunes side by side with one thread each; x4 then got two more short
# stages (300 + 350 + 350 iterations at lr 2.5e-4) to clear the shipping floor.
# Shipped: runs/tiny-x2/best.safetensors (= its last iteration), runs/tiny-x3/latest,
# runs/tiny-x4-stage4/latest, copied to src/seemore_sr/weights/seemore-tiny-x{s}.safetensors.
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
seemore train cpu --run runs/tiny-x4-stage2 --no-progress --set model.scale=4 --set train.iterations=300 \
  --set train.lr=2.5e-4 --set train.val_every=100 --set model.init_from=runs/tiny-x4/latest.safetensors
seemore train cpu --run runs/tiny-x4-stage3 --no-progress --set model.scale=4 --set train.iterations=350 \
  --set train.lr=2.5e-4 --set train.val_every=350 --set model.init_from=runs/tiny-x4-stage2/latest.safetensors
seemore train cpu --run runs/tiny-x4-stage4 --no-progress --set model.scale=4 --set train.iterations=350 \
  --set train.lr=2.5e-4 --set train.val_every=350 --set model.init_from=runs/tiny-x4-stage3/latest.safetensors
