#!/usr/bin/env bash
# Packs a published .NET app and this machine's .NET runtime into .gpu/ at the repository root,
# for a CUDA host that has a GPU driver and a Python PyTorch install but no .NET SDK.
#   usage: build/gpu/pack.sh PUBLISH_DIR NAME        (build/gpu-pack.sh calls it for the three test apps)
# PUBLISH_DIR: output of `dotnet publish -c Release -o PUBLISH_DIR` of an app built WITHOUT the
#              libtorch-cpu native package (-p:LigerTorchRuntime=none; the host's libtorch is used instead:
#              docs/gpu-host.md).
# NAME:        a short name for the app; .gpu/NAME.tar.xz is written.
# Also writes .gpu/dotnet-runtime.tar.xz once (reused while it exists) and copies run.sh into .gpu/.
# Add /.gpu/ to .gitignore: nothing in it is committed.
set -euo pipefail
pub=${1:?usage: pack.sh PUBLISH_DIR NAME}; name=${2:?usage: pack.sh PUBLISH_DIR NAME}
root=$(git rev-parse --show-toplevel); here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$root/.gpu"
dotnet_home=$(dirname "$(readlink -f "$(command -v dotnet)")")
if [[ ! -s $root/.gpu/dotnet-runtime.tar.xz ]]; then
  echo "packing the .NET runtime (about 30 s, once)"
  tar -C "$dotnet_home" -cf - dotnet host shared/Microsoft.NETCore.App | xz -T0 -6 > "$root/.gpu/dotnet-runtime.tar.xz"
fi
if find "$pub" -name 'libtorch_cpu.so' | grep -q .; then
  echo "warning: $pub holds libtorch_cpu.so: publish without the libtorch-cpu package, or the bundle will be far too large" >&2
fi
# only linux-x64 native assets are needed on the host
tar -C "$pub" --exclude='runtimes/win*' --exclude='runtimes/osx*' --exclude='runtimes/linux-arm*' --exclude='runtimes/linux-musl*' \
    -cf - . | xz -T0 -6 > "$root/.gpu/$name.tar.xz"
cp "$here/run.sh" "$root/.gpu/run.sh"
du -ch "$root"/.gpu/*.tar.xz | tail -n 1 | sed 's/total/total to carry (64 MiB at most)/'
