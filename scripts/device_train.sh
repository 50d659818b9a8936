#!/usr/bin/env bash
# Every lent GPU minute goes to training (issue 12): continue the x2 trunk on the device at
# the paper's batch (32 x 64px LR patches), for MINUTES of training, then hand back its state.
#
#   here:    scripts/campaign.sh stop   (BRANCHES=0 to skip the branches) so runs/campaign-x2/state.pt is current
#            python scripts/pack_devdata.py    (the training set as lossless WebP in .devdata/, ignored by git)
#   device:  run(command="bash scripts/device_train.sh", carry=[".devdata"], timeout_s=600)
#   here:    python scripts/campaign.py adopt DIR    (DIR = the reply's files_at: state, log, metrics)
#            scripts/campaign.sh start               (the CPU trunk resumes from the GPU's state)
#
# Precision and layout are chosen by a short side-by-side benchmark on the device
# (benchmarks/bench_train.py --choose; skipped on a CPU). Environment: MINUTES (8), OUT, and
# for tests RUN, DATA, BATCH, PATCH.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/device-train}; mkdir -p "$OUT"
RUN=${RUN:-runs/campaign-x2}
DATA=${DATA:-.devdata/train}
MINUTES=${MINUTES:-8}
BATCH=${BATCH:-32}
PATCH=${PATCH:-64}
[ -f "$RUN/state.pt" ] || { echo "device_train: $RUN/state.pt missing: nothing to continue" >&2; exit 2; }
[ -d "$DATA" ] || { echo "device_train: $DATA missing: run scripts/pack_devdata.py and carry .devdata" >&2; exit 2; }
choice="fp32 false"
if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
  choice=$(python3 benchmarks/bench_train.py --device cuda --batch "$BATCH" --patch "$PATCH" --repeats 5 --choose \
    --json "$OUT/options.json" | tee "$OUT/options.txt" | tail -1)
fi
read -r precision channels_last <<<"$choice"
echo "device_train: $precision, channels_last=$channels_last, batch $BATCH x ${PATCH}px, $MINUTES min" | tee "$OUT/train.log"
python3 -m seemore_sr train cpu-trunk --run "$RUN" --no-progress --max-minutes "$MINUTES" \
  --set "data.train=[$DATA]" --set data.val=null --set data.patch_size="$PATCH" --set train.batch_size="$BATCH" \
  --set train.precision="$precision" --set train.channels_last="$channels_last" --set train.threads=0 \
  --set train.log_every=50 --set train.ckpt_every=500 2>&1 | tee -a "$OUT/train.log"
cp "$RUN/state.pt" "$RUN/latest.safetensors" "$RUN/metrics.jsonl" "$OUT/"
echo "device_train: state at iteration $(python3 -c "import torch; print(torch.load('$OUT/state.pt', weights_only=True)['iteration'])") in $OUT"
