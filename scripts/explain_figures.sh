#!/usr/bin/env bash
# The README's `seemore explain` figures for the bundled x4 weights (rerun whenever weights ship):
# routing over Set5 + B100 (docs/explain-routing-x4.png) and one photo (docs/explain-photo-x4.png).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
seemore explain seemore-tiny-x4 ../shared/data/benchmark/Set5/LR_bicubic/X4/butterflyx4.png \
  --data ../shared/data/benchmark/Set5 ../shared/data/benchmark/B100 --out "$out" | tee campaign/results/explain-x4.txt
cp "$out/routing.png" docs/explain-routing-x4.png
cp "$out/butterflyx4_explain.png" docs/explain-photo-x4.png
cp "$out/routing.json" campaign/results/explain-routing-x4.json
