#!/usr/bin/env bash
# The CPU benchmark set of a session, for the CPU it runs on: executors, peers
# (twice, separate processes), the per-op profile, peers with the kernels held to AVX2
# (oneDNN, MKL and ATen told not to use AVX-512: which executor wins on AVX2 kernels, not
# an AVX2 machine's memory system or clocks), and video. Pause other work first.
#     bash benchmarks/run_cpu_set.sh TAG        # e.g. xeon-167; writes benchmarks/results/*-TAG.*
set -euo pipefail
tag=${1:?usage: bash benchmarks/run_cpu_set.sh TAG}
r=benchmarks/results
python benchmarks/bench_inference.py --models tiny-x4 --repeats 5 --no-onnx --json "$r/bench_tiny_x4-$tag.json" > "$r/bench_tiny_x4-$tag.txt"
python benchmarks/bench_inference.py --peers --repeats 9 --json "$r/peers-$tag.json" > "$r/peers-$tag.txt"
python benchmarks/bench_inference.py --peers --repeats 9 --json "$r/peers-$tag-run2.json" > "$r/peers-$tag-run2.txt"
python benchmarks/profile_inference.py 2>/dev/null | grep -v '^USDT' > "$r/profile-optimize-$tag.txt"
avx2=$(mktemp -d)
{
  echo "# kernels held to AVX2: ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2 (own executor cache)"
  ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2 SEEMORE_CACHE="$avx2" \
    python benchmarks/bench_inference.py --peers --repeats 9 --json "$r/peers-$tag-as-avx2.json"
} > "$r/peers-$tag-as-avx2.txt"
rm -rf "$avx2"
python benchmarks/bench_video.py --frames 24 --json "$r/video-$tag.json" > "$r/video-$tag.txt"
tail -n 12 "$r/bench_tiny_x4-$tag.txt" "$r/peers-$tag.txt" "$r/peers-$tag-run2.txt" "$r/peers-$tag-as-avx2.txt" "$r/video-$tag.txt"
