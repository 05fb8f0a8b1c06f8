#!/usr/bin/env bash
# The consumer test (issue 17): does what README's "Install" section tells a package user to do, outside this
# repository, and fails unless the result trains, saves, loads and generates.
#   1. packs Liger.Kernels, Liger.MLNet and Liger.Launch into a local feed (a temp folder);
#   2. creates a console app in a temp folder (so none of this repository's Directory.Build.* or
#      Directory.Packages.props reach it) with its own nuget.config: the local feed ahead of nuget.org, and Liger.*
#      taken from the local feed only;
#   3. `dotnet add package Liger.MLNet --version 0.1.0` and `dotnet add package libtorch-cpu-linux-x64 --version 2.10.0`;
#   4. runs test/Consumer/Program.cs in it (a tiny fine-tune on the CPU, checked; see the file);
#   5. checks the TorchSharp load fix that Liger.Kernels' buildTransitive targets applied: on a host whose libstdc++
#      lacks GLIBCXX_3.4.32 (Debian 12) the output's libLibTorchSharp.so differs from TorchSharp's in exactly one
#      byte (none where it has it), publish gives the same file, and it is left as shipped with
#      LigerPatchLibTorchSharp=false or when the libstdc++ judged by (LigerLibStdCxxPath) has the version;
#   6. installs Liger.Launch as a dotnet tool from the feed and runs `liger-launch --help`.
# NuGet's package folder is a fresh one (NUGET_PACKAGES), so an older liger.* in ~/.nuget/packages cannot stand in for
# the packages just packed. Exits non-zero, naming the step, when anything fails. LIGER_CONSUMER_KEEP=1 keeps the folder.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
version=0.1.0
work=$(mktemp -d "${TMPDIR:-/tmp}/liger-consumer.XXXXXX")
[ "${LIGER_CONSUMER_KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
step() { echo "consumer [${SECONDS}s]: $*"; }
fail() { echo "consumer test FAILED: $*" >&2; exit 1; }

step "1. packing into $work/feed"
for project in src/Liger.Kernels src/Microsoft.ML.Liger src/Liger.Launch; do
  dotnet pack "$repo/$project" -c Release -o "$work/feed" -v q -clp:NoSummary || fail "dotnet pack $project"
done
for package in Liger.Kernels Liger.MLNet Liger.Launch; do
  [ -f "$work/feed/$package.$version.nupkg" ] && [ -f "$work/feed/$package.$version.snupkg" ] \
    || fail "the feed lacks $package.$version.nupkg or its .snupkg"
done

# From here on, NuGet restores into a fresh package folder. Packages this machine already downloaded are read from
# its global folder as an extra local source (so CI does not fetch libtorch twice); Liger.* never comes from there.
cache=${NUGET_PACKAGES:-$HOME/.nuget/packages}
export NUGET_PACKAGES="$work/packages"
app="$work/app"
mkdir -p "$app"
cache_source=""
cache_mapping=""
if [ -d "$cache" ]; then
  cache_source="<add key=\"machine-cache\" value=\"$cache\" />"
  cache_mapping="<packageSource key=\"machine-cache\"><package pattern=\"*\" /></packageSource>"
fi
cat > "$app/nuget.config" <<EOF
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <clear />
    <add key="liger-local" value="$work/feed" />
    $cache_source
    <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
  </packageSources>
  <packageSourceMapping>
    <packageSource key="liger-local"><package pattern="Liger.*" /></packageSource>
    $cache_mapping
    <packageSource key="nuget.org"><package pattern="*" /></packageSource>
  </packageSourceMapping>
</configuration>
EOF

step "2. dotnet new console in $app"
(cd "$app" && dotnet new console --name ConsumerApp --output . >/dev/null) || fail "dotnet new console"
step "3. dotnet add package Liger.MLNet, libtorch-cpu-linux-x64"
(cd "$app" && dotnet add package Liger.MLNet --version "$version" >/dev/null) || fail "dotnet add package Liger.MLNet --version $version"
(cd "$app" && dotnet add package libtorch-cpu-linux-x64 --version 2.10.0 >/dev/null) || fail "dotnet add package libtorch-cpu-linux-x64 --version 2.10.0"
cp "$repo/test/Consumer/Program.cs" "$app/Program.cs"

step "4. build and run the app"
(cd "$app" && dotnet build -c Release -v q -clp:NoSummary) || fail "dotnet build of the consumer app"
(cd "$app" && dotnet run -c Release --no-build) || fail "the consumer app's checks (above)"

step "5. the TorchSharp load fix"
shipped=$(find "$NUGET_PACKAGES/torchsharp" -path '*/runtimes/linux-x64/native/libLibTorchSharp.so' | head -n 1)
built="$app/bin/Release/net10.0/runtimes/linux-x64/native/libLibTorchSharp.so"
[ -f "$shipped" ] && [ -f "$built" ] || fail "libLibTorchSharp.so not found (package: '$shipped', output: $built)"
# The libstdc++ the app loads: the .NET host links it, as the build step assumes.
libstdcxx=$(ldd "$(command -v dotnet)" | sed -n 's/.*libstdc++\.so\.6 => \([^ ]*\).*/\1/p' | head -n 1)
differing=$(cmp -l "$shipped" "$built" | wc -l || true)
if grep -qa 'GLIBCXX_3\.4\.32' "$libstdcxx"; then
  [ "$differing" -eq 0 ] || fail "$libstdcxx has GLIBCXX_3.4.32, yet the output's libLibTorchSharp.so was changed ($differing bytes)"
else
  [ "$differing" -eq 1 ] || fail "$libstdcxx lacks GLIBCXX_3.4.32: expected the output's libLibTorchSharp.so to differ from TorchSharp's in 1 byte (the weak flag), got $differing"
fi
echo "  $libstdcxx; output libLibTorchSharp.so differs from TorchSharp's in $differing byte(s)"
(cd "$app" && dotnet publish -c Release --no-build -o "$work/publish" -v q -clp:NoSummary >/dev/null) || fail "dotnet publish of the consumer app"
published=$(find "$work/publish" -name libLibTorchSharp.so | head -n 1)
cmp -s "$built" "$published" || fail "the published libLibTorchSharp.so ('$published') is not the build output's"
echo "  publish: the same libLibTorchSharp.so as the build output"
fake="$work/libstdc++-with-3.4.32.so"
printf 'stand-in for a newer libstdc++\0GLIBCXX_3.4.32\0' > "$fake"
for property in "LigerPatchLibTorchSharp=false" "LigerLibStdCxxPath=$fake"; do
  out="$work/out-${property%%=*}/"
  (cd "$app" && dotnet build -c Release -v q -clp:NoSummary "-p:$property" "-p:OutDir=$out") || fail "dotnet build -p:$property"
  cmp -s "$shipped" "$out/runtimes/linux-x64/native/libLibTorchSharp.so" \
    || fail "with -p:$property the output's libLibTorchSharp.so should be TorchSharp's, unchanged"
  echo "  -p:$property: left as shipped"
done

step "6. dotnet tool install Liger.Launch; liger-launch --help"
dotnet tool install --tool-path "$work/tools" --add-source "$work/feed" --version "$version" Liger.Launch >/dev/null \
  || fail "dotnet tool install Liger.Launch"
help=$("$work/tools/liger-launch" --help) || fail "liger-launch --help exited non-zero"
grep -q -- '--nproc-per-node' <<<"$help" || fail "liger-launch --help printed no usage: $help"
echo "  $(head -n 1 <<<"$help")"
echo "consumer test passed in ${SECONDS}s"
