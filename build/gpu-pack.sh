#!/usr/bin/env bash
# Publishes the benchmark app and the kernel test app without libtorch natives (the GPU host brings its
# own libtorch) and packs them with the .NET runtime into .gpu/ (git-ignored), the folder that travels to
# the GPU host (docs/gpu-host.md). Then, on the host, from the repository root:
#   bash test/Liger.Benchmarks/gpu-run.sh gpu --out "$OUT"                       benchmarks
#   bash .gpu/run.sh tests Liger.Kernels.Tests.dll --report-trx --results-directory "$OUT"   kernel tests on CUDA
#   bash .gpu/run.sh mltests Microsoft.ML.Liger.Tests.dll ...                     model tests (oracle, bf16 convergence)
#   build/gpu-pack.sh [bench] [tests] [mltests]   packs only those (default: all three). All three together pass the
#   64 MiB a device call carries (about 67 MiB), so pack what one call needs: e.g. `tests mltests` for the CUDA test run.
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
pack=${LIGER_GPU_PACK:-$root/build/gpu/pack.sh}
apps=("$@"); [ ${#apps[@]} -eq 0 ] && apps=(bench tests mltests)
for app in "${apps[@]}"; do
  case "$app" in
    bench) project=test/Liger.Benchmarks ;;
    tests) project=test/Liger.Kernels.Tests ;;
    mltests) project=test/Microsoft.ML.Liger.Tests ;;
    *) echo "build/gpu-pack.sh: unknown app '$app' (expected bench, tests or mltests)" >&2; exit 2 ;;
  esac
  rm -f "$root/.gpu/$app.tar.xz"
  dotnet publish "$project" -c Release -o "/tmp/liger-gpu/$app" -p:LigerTorchRuntime=none --nologo -v q
  bash "$pack" "/tmp/liger-gpu/$app" "$app"
done
