#!/usr/bin/env bash
# Packs GRcn.Kernels, GRcn.Detection and the grcn tool (GRcn.Cli) with symbols into a local feed,
# builds and runs a fresh consumer project (.ci/consumer, copied outside the repository) that
# references the packages by PackageReference from that feed, then installs the tool from the
# feed into a tool path and runs `grcn devices`. Offline-capable: the feed is added beside the
# package sources already configured, and the dependencies come from the local package cache.
# Every run packs a unique prerelease version (0.1.0-ci.<time>), so a package cached by an earlier
# run is never taken for the new one; those versions are removed from the cache afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
base=$(dotnet msbuild src/GRcn.Kernels -getProperty:Version)
version="$base-ci.$(date +%s)"
work=$(mktemp -d)
cache=${NUGET_PACKAGES:-$HOME/.nuget/packages}
cleanup() {
    rm -rf "$work"
    for id in grcn.kernels grcn.detection grcn.cli; do
        rm -rf "${cache:?}/$id/$version"
        rmdir "$cache/$id" 2>/dev/null || true
    done
}
trap cleanup EXIT
feed="$work/feed"

# built with ContinuousIntegrationBuild (source paths mapped to /_/): under CI (CI=true) every build
# already was; elsewhere a full rebuild, since an incremental one would keep objects compiled with
# local paths (MSBuild does not recompile when only the path map changes)
incremental=--no-incremental
[ "${CI:-}" = true ] && incremental=
dotnet build src/GRcn.Cli -c Release $incremental -p:ContinuousIntegrationBuild=true -v:q -nologo
for project in src/GRcn.Kernels src/GRcn.Detection src/GRcn.Cli; do
    dotnet pack "$project" -c Release --no-build -o "$feed" -p:PackageVersion="$version" -p:ContinuousIntegrationBuild=true -v:q -nologo
done
# each package and its symbols; the package's own README; no build machine path in its assemblies
/usr/bin/python3 - "$feed" "$version" "$PWD/" <<'PY'
import os, sys, zipfile
feed, version, root = sys.argv[1], sys.argv[2], sys.argv[3].encode()
for id in ("GRcn.Kernels", "GRcn.Detection", "GRcn.Cli"):
    for ext in ("nupkg", "snupkg"):
        if not os.path.isfile(f"{feed}/{id}.{version}.{ext}"): sys.exit(f"packages: {feed}/{id}.{version}.{ext} is missing")
    with zipfile.ZipFile(f"{feed}/{id}.{version}.nupkg") as z:
        names = z.namelist()
        if "README.md" not in names: sys.exit(f"packages: {id} has no README.md")
        for n in names:
            if n.endswith(".dll") and root in z.read(n): sys.exit(f"packages: {id}'s {n} names the build folder {root.decode()}")
PY

mkdir "$work/consumer"
cp .ci/consumer/Consumer.csproj .ci/consumer/Program.cs "$work/consumer/"
cat > "$work/consumer/nuget.config" <<XML
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <add key="grcn-local-feed" value="$feed" />
  </packageSources>
</configuration>
XML
(cd "$work/consumer" && dotnet run -c Release -p:GRcnVersion="$version" -v:q -nologo)

dotnet tool install GRcn.Cli --version "$version" --tool-path "$work/tools" --add-source "$feed" -v:q
"$work/tools/grcn" devices
echo "packages: GRcn.Kernels, GRcn.Detection and GRcn.Cli $version packed with symbols, consumed and installed"
