#!/usr/bin/env bash
# Publishes the benchmark app and the kernel test app without libtorch natives (the GPU host brings its
# own libtorch) and packs them with the .NET runtime into .gpu/ (git-ignored), the folder that travels to
# the GPU host (docs/gpu-host.md). Then, on the host, from the repository root:
#   bash test/Liger.Benchmarks/gpu-run.sh gpu --out "$OUT"                       benchmarks
#   bash .gpu/run.sh tests Liger.Kernels.Tests.dll --report-trx --results-directory "$OUT"   kernel tests on CUDA
#   bash .gpu/run.sh mltests Microsoft.ML.Liger.Tests.dll ...                     model tests (oracle, bf16 convergence)
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
pack=${LIGER_GPU_PACK:-$root/build/gpu/pack.sh}
dotnet publish test/Liger.Benchmarks -c Release -o /tmp/liger-gpu/bench -p:LigerTorchRuntime=none --nologo -v q
dotnet publish test/Liger.Kernels.Tests -c Release -o /tmp/liger-gpu/tests -p:LigerTorchRuntime=none --nologo -v q
dotnet publish test/Microsoft.ML.Liger.Tests -c Release -o /tmp/liger-gpu/mltests -p:LigerTorchRuntime=none --nologo -v q
bash "$pack" /tmp/liger-gpu/bench bench
bash "$pack" /tmp/liger-gpu/tests tests
bash "$pack" /tmp/liger-gpu/mltests mltests
