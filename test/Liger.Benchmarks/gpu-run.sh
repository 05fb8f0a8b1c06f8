#!/usr/bin/env bash
# Runs the packed benchmark app on the GPU host (see ../../../shared/gpu/README.md and docs/benchmarks.md):
#   bash test/Liger.Benchmarks/gpu-run.sh [app args...]      from the repository root, with .gpu/ beside it
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
exec bash .gpu/run.sh bench Liger.Benchmarks.dll "$@"
