#!/usr/bin/env bash
# The GPU measurements of BENCHMARKS.md, as one run on a lent GPU machine (PyTorch there).
# BENCH_ONLY=1 / CHECK_ONLY=1 run only the benchmark / only device_check.py.
# Needs Set5 and the golden files copied into .devdata/ (ignored by git) beforehand:
#   mkdir -p .devdata && cp -r ../shared/data/benchmark/Set5 ../shared/reference/golden .devdata/
set -o pipefail
export PYTHONPATH=src PYTHONUNBUFFERED=1
OUT=${OUT:-campaign/device}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, numpy, PIL, safetensors, yaml, tqdm; print('torch', torch.__version__)" || exit 1
[ -n "$BENCH_ONLY" ] || python3 benchmarks/device_check.py --device cuda --set5 .devdata/Set5 --golden .devdata/golden \
    --json "$OUT/device_check.json" 2>&1 | tee "$OUT/device_check.txt"
[ -n "$CHECK_ONLY" ] || python3 benchmarks/bench_inference.py --device cuda --models "${MODELS:-all}" --repeats 10 --no-onnx --memory \
    --json "$OUT/bench_gpu.json" 2>&1 | tee "$OUT/bench_gpu.txt"
if [ -n "$COMPILE" ]; then
  timeout 200 python3 benchmarks/bench_inference.py --device cuda --models tiny-x4,tiny-x2 --repeats 10 \
      --no-onnx --compile --json "$OUT/bench_gpu_compile.json" 2>&1 | tee "$OUT/bench_gpu_compile.txt"
fi
