#!/usr/bin/env bash
# Runs the packed benchmark app on the GPU host (see docs/gpu-host.md and docs/benchmarks.md):
#   bash test/Liger.Benchmarks/gpu-run.sh [app args...]      from the repository root, with .gpu/ beside it
#   LIGER_COUNT_API=1 bash test/Liger.Benchmarks/gpu-run.sh fit ...   also counts launches and host syncs per step
# First compiles the allocator-statistics shim against the host's libtorch, so peak memory can be read.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
torch_dir=$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))')
shim=/tmp/liger-stats/libliger_cuda_stats.so
if [[ ! -s $shim ]]; then
  mkdir -p /tmp/liger-stats
  g++ -O2 -shared -fPIC -std=c++17 -D_GLIBCXX_USE_CXX11_ABI=1 \
      -I"$torch_dir/include" -I/usr/local/cuda/include \
      "$here/native/cuda_memory_stats.cpp" -L"$torch_dir/lib" -lc10_cuda -lc10 \
      -Wl,-rpath,"$torch_dir/lib" -o "$shim" || echo "warning: allocator-statistics shim did not build: peak memory will read n/a" >&2
fi
export LIGER_CUDA_STATS=$shim
# The launch / host-sync counter (CUPTI) only when asked: CUPTI's callbacks cost host time on every CUDA call,
# so timings taken with it on are not the reported ones.
if [[ ${LIGER_COUNT_API:-0} == 1 ]]; then
  counts=/tmp/liger-stats/libliger_api_counts.so
  cupti=$(dirname "$(find /usr/local/cuda/ -name cupti.h | head -n 1)")
  cupti_lib=$(dirname "$(find /usr/local/cuda/ -name 'libcupti.so*' | head -n 1)")
  if [[ ! -s $counts ]]; then
    gcc -O2 -shared -fPIC -I/usr/local/cuda/include -I"$cupti" "$here/native/cuda_api_counts.c" \
        -L"$cupti_lib" -lcupti -Wl,-rpath,"$cupti_lib" -o "$counts" || echo "warning: the CUPTI counter did not build" >&2
  fi
  export LIGER_CUDA_COUNTS=$counts
fi
exec bash .gpu/run.sh bench Liger.Benchmarks.dll "$@"
