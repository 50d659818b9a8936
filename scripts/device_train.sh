#!/usr/bin/env bash
# Every lent GPU minute goes to training: continue the x2 trunk on the device at
# the paper's batch (32 x 64px LR patches) for MINUTES, then, if COOL_S > 0, the branches that
# make shippable weights, at the same batch: an x2 cool-down (linear decay to 0) from the
# trunk's state for about COOL_S seconds, then x3 and x4 fine-tunes from the cooled x2 for
# about FT_S seconds each. Iteration counts come from the trunk's measured speed on the device;
# each branch also has a time limit, so a wrong estimate cannot overrun the call.
#
#   here:    scripts/campaign.sh stop   (BRANCHES=0 to skip the CPU branches) so campaign/trunk/state.pt is current
#            python scripts/pack_devdata.py    (the training set as lossless WebP in .devdata/, ignored by git)
#   device:  run(command="MINUTES=4.5 COOL_S=60 FT_S=80 bash scripts/device_train.sh", carry=[".devdata"], timeout_s=590)
#   here:    python scripts/campaign.py adopt DIR    (DIR = the reply's files_at: the trunk's state, log and metrics;
#            the branches, if any, are unpacked into campaign/runs/, evaluated, and shipped if better)
#            scripts/campaign.sh start               (the CPU trunk resumes from the GPU's state)
#
# What comes back ($OUT, flat, at most 8 files): state.pt, latest.safetensors, metrics.jsonl,
# train.log, options.json and one tar per branch (cool.tar, x3.tar, x4.tar), each written as soon
# as its phase ends, so a call cut off by its limit still returns the phases before.
# Precision and layout are chosen by a short side-by-side benchmark on the device
# (benchmarks/bench_train.py --choose; skipped on a CPU). Environment: MINUTES (8), COOL_S (0),
# FT_S (COOL_S), OUT, and for tests RUN, DATA, BATCH, PATCH.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/device-train}; mkdir -p "$OUT"
RUN=${RUN:-campaign/trunk}
DATA=${DATA:-.devdata/train}
MINUTES=${MINUTES:-8}
COOL_S=${COOL_S:-0}
FT_S=${FT_S:-$COOL_S}
BATCH=${BATCH:-32}
PATCH=${PATCH:-64}
LOG="$OUT/train.log"
[ -f "$RUN/state.pt" ] || { echo "device_train: $RUN/state.pt missing: nothing to continue" >&2; exit 2; }
[ -d "$DATA" ] || { echo "device_train: $DATA missing: run scripts/pack_devdata.py and carry .devdata" >&2; exit 2; }
choice="fp32 false"
if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 | tee -a "$LOG" || true
  choice=$(python3 benchmarks/bench_train.py --device cuda --batch "$BATCH" --patch "$PATCH" --repeats 5 --choose \
    --json "$OUT/options.json" | tee -a "$LOG" | tail -1) || choice="fp32 false"  # a failed benchmark costs no training
fi
read -r precision channels_last <<<"$choice"
common=(--no-progress --set "data.train=[$DATA]" --set data.val=null --set data.patch_size="$PATCH"
        --set train.batch_size="$BATCH" --set train.precision="$precision" --set train.channels_last="$channels_last"
        --set train.threads=0 --set train.log_every=50)
echo "device_train: $precision, channels_last=$channels_last, batch $BATCH x ${PATCH}px, trunk $MINUTES min" | tee -a "$LOG"
state_iter() { python3 -c "import torch; print(torch.load('$RUN/state.pt', weights_only=True)['iteration'])"; }
t0=$(state_iter)
python3 -m seemore_sr train campaign/recipes/cpu-trunk.yaml --run "$RUN" --max-minutes "$MINUTES" "${common[@]}" \
  --set train.ckpt_every=500 2>&1 | tee -a "$LOG"
cp "$RUN/state.pt" "$RUN/latest.safetensors" "$RUN/metrics.jsonl" "$OUT/"
t=$(state_iter)
echo "device_train: trunk state at iteration $t in $OUT" | tee -a "$LOG"
[ "$COOL_S" != 0 ] || exit 0

# The device's speed: the median it/s of this call's log rows, or iterations over minutes without any.
rate=$(python3 - "$RUN/metrics.jsonl" "$t0" "$t" "$MINUTES" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
t0, t, minutes = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
mine = [r["it_s"] for r in rows if r["iter"] > t0]
print(statistics.median(mine[-20:]) if mine else max(t - t0, 1) / (minutes * 60))
PY
)
iters() { python3 -c "print(max(20, int($rate * $1)))"; }
branch() {  # NAME SECONDS ARGS...: a branch run in campaign/runs/NAME with a time limit of 1.5x its estimate
  local name=$1 secs=$2; shift 2
  echo "device_train: branch $name (about ${secs}s at $rate it/s): $*" | tee -a "$LOG"
  python3 -m seemore_sr train campaign/recipes/cpu-trunk.yaml --run "campaign/runs/$name" --max-minutes "$(python3 -c "print($secs * 1.5 / 60)")" \
    "${common[@]}" --set train.ema_decay=0 --set train.ckpt_every=1000000 "$@" 2>&1 | tee -a "$LOG"
}
pack() { tar -C campaign/runs -cf "$OUT/$1.tar" --exclude=state.pt "$2"; }
n=$(iters "$COOL_S")
cool=campaign-x2-cool-$t
branch "$cool" "$COOL_S" --set train.branch_from="$RUN/state.pt" --set train.iterations=$((t + n)) --set train.warmup=0 \
  --set train.decay="$n" --set train.val_every=$((t + n))
pack cool "$cool"
n=$(iters "$FT_S"); warm=$(( n / 4 < 50 ? n / 4 : 50 ))
for s in 3 4; do
  branch "campaign-x$s-ft-$t" "$FT_S" --set model.scale=$s --set model.init_from="campaign/runs/$cool/latest.safetensors" \
    --set train.iterations="$n" --set train.warmup="$warm" --set train.decay=$((n - warm)) --set train.val_every="$n"
  pack "x$s" "campaign-x$s-ft-$t"
done
echo "device_train: branches packed in $OUT" | tee -a "$LOG"
