#!/usr/bin/env bash
# After the real-photo runs finish: evaluate them on the degraded benchmarks, ship them into
# the package (ledger line, routing, the run folders' states dropped), evaluate the shipped
# names with the denoise strength "auto", and remake the README's generated blocks and figure.
#   bash scripts/real_ship.sh            (from the repository root, the venv active)
# x4 and x2 run side by side, one thread each (their logs: campaign/results/real-ship-x*.log).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
rw() { python scripts/real_weights.py "$@"; }
for s in 4 2; do
  [ -f "campaign/runs/real-x$s/latest.safetensors" ] || { echo "real_ship: campaign/runs/real-x$s has no weights" >&2; exit 2; }
done
chain() {  # one scale: its real run on the presets, shipped, then its -real name with denoise auto
  local s=$1
  rw presets --scale "$s" --method "campaign/runs/real-x$s/latest.safetensors"
  if [ "$s" = 2 ]; then rw presets --scale 2 --method seemore-tiny-x2 --only mixed; fi
  rw ship --scale "$s" --run "campaign/runs/real-x$s"
  rw presets --scale "$s" --method "seemore-tiny-x$s-real" --denoise auto
}
chain 4 > campaign/results/real-ship-x4.log 2>&1 &
p4=$!
chain 2 > campaign/results/real-ship-x2.log 2>&1 &
p2=$!
wait "$p4"
wait "$p2"
rw readme
python scripts/real_figure.py --out docs/real-photos.png
