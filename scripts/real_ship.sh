#!/usr/bin/env bash
# After the real-photo runs finish: evaluate them on the degraded benchmarks, ship each one
# whose mean PSNR over the presets beats the bundled -real weights of its scale (ledger line,
# routing, the run folder's state dropped), and evaluate the bundled names with the denoise
# strength "auto". Then remake the README's generated blocks and figure.
#   bash scripts/real_ship.sh [RUN_X4 RUN_X2]     (from the repository root, the venv active;
#                                                  default campaign/runs/real-x4, real-x2)
# x4 and x2 run side by side, one thread each (their logs: campaign/results/real-ship-x*.log).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
declare -A RUN=([4]="${1:-campaign/runs/real-x4}" [2]="${2:-campaign/runs/real-x2}")
rw() { python scripts/real_weights.py "$@"; }
for s in 4 2; do
  [ -f "${RUN[$s]}/latest.safetensors" ] || { echo "real_ship: ${RUN[$s]} has no weights" >&2; exit 2; }
done
chain() {  # one scale: its run on the presets, shipped if better, then its -real name with denoise auto
  local s=$1 rc=0
  rw presets --scale "$s" --method "${RUN[$s]}/latest.safetensors"
  rw ship --scale "$s" --run "${RUN[$s]}" || rc=$?
  [ "$rc" = 0 ] || [ "$rc" = 3 ] || return "$rc"  # 3: not better, the bundled weights stay
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
