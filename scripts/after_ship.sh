#!/usr/bin/env bash
# After `campaign.py extend` ships new weights at the given scales: remake everything in
# the repo that was measured on the bundled weights, and rewrite the README's tables.
#   bash scripts/after_ship.sh 4 3
# campaign.py has already written campaign/results/bundled-xS.json (and .txt) on the ship.
# This measures, for each given scale, the PSNR change of --mirror auto and --mirror 4
# (bundled-xS-mirror-auto.json, -mirror4.json), then at every scale the rim
# (rim-bundled.json); remakes docs/comparison.png and docs/campaign.png; rewrites the
# README's weights and rim tables (scripts/readme_tables.py --write). The README's prose
# (the budget paragraph, the rim line) is still written by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || { echo "usage: bash scripts/after_ship.sh SCALE..." >&2; exit 2; }
data=(../shared/data/benchmark/Set5 ../shared/data/benchmark/Set14 ../shared/data/benchmark/B100)
for s in "$@"; do
  for m in auto 4; do
    seemore eval "seemore-tiny-x$s" --data "${data[@]}" --mirror "$m" --no-progress \
      --json "campaign/results/bundled-x$s-mirror${m/auto/-auto}.json"
  done
done
python scripts/border_rim.py --mirror 0 auto 4 --json campaign/results/rim-bundled.json
python scripts/compare_figure.py --out docs/comparison.png
python scripts/campaign.py plot
python scripts/readme_tables.py --write
