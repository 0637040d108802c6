#!/usr/bin/env bash
# Compiles every kernels/*.cu to PTX for a portable virtual architecture and writes
# kernels/ptx/NAME.ptx, whose first line records the hash of the sources it was built from:
#
#   // grcn-source-sha256: <hex>
#
# The hash is SHA-256 over the bytes of NAME.cu followed by the bytes of every kernels/*.cuh
# (not hidden files), taken in byte order of their file names (LC_ALL=C). Every header counts,
# included or not, so no include scanning is needed and no edit to a header goes unnoticed.
# tests/GRcn.Kernels.Tests/PtxHashTests.cs computes the same hash and fails when a committed
# PTX file is stale, missing, or has no .cu.
#
# Usage:
#   kernels/build.sh              build every kernels/*.cu, remove PTX whose .cu is gone
#   kernels/build.sh --hashes [DIR]  print "NAME.cu HASH" for each DIR/*.cu (no nvcc needed)
#   kernels/build.sh --check [DIR]   exit 1 unless DIR/ptx matches DIR/*.cu (no nvcc needed)
#
# Environment: NVCC (default nvcc), GRCN_PTX_ARCH (default compute_70: the PTX JIT-compiles
# on Volta and every later GPU), NVCC_FLAGS (extra flags, e.g. "-ccbin g++-12").
# Floating point stays exact IEEE FP32: no --use_fast_math, denormals kept, correctly rounded
# division and square root. FMA contraction is left on (nvcc's default, as on the CPU side).
set -euo pipefail
export LC_ALL=C
shopt -s nullglob

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
header_line='// grcn-source-sha256: '

# source_hash DIR NAME.cu: the hash defined above.
source_hash() {
    local dir="$1" cu="$2"
    local headers=("$dir"/*.cuh)
    cat -- "$dir/$cu" "${headers[@]}" | sha256sum | cut -d' ' -f1
}

print_hashes() {
    local dir="$1" cu
    for cu in "$dir"/*.cu; do
        cu="$(basename "$cu")"
        printf '%s %s\n' "$cu" "$(source_hash "$dir" "$cu")"
    done
}

check() {
    local dir="$1" bad=0 cu name ptx want got
    for cu in "$dir"/*.cu; do
        name="$(basename "$cu" .cu)"
        ptx="$dir/ptx/$name.ptx"
        want="$header_line$(source_hash "$dir" "$name.cu")"
        if [[ ! -f "$ptx" ]]; then
            echo "missing: ptx/$name.ptx (run kernels/build.sh)" >&2
            bad=1
            continue
        fi
        got="$(head -n 1 -- "$ptx")"
        if [[ "$got" != "$want" ]]; then
            echo "stale: ptx/$name.ptx was built from other sources (run kernels/build.sh)" >&2
            bad=1
        fi
    done
    for ptx in "$dir"/ptx/*.ptx; do
        name="$(basename "$ptx" .ptx)"
        if [[ ! -f "$dir/$name.cu" ]]; then
            echo "orphan: ptx/$name.ptx has no $name.cu" >&2
            bad=1
        fi
    done
    return "$bad"
}

build() {
    local nvcc="${NVCC:-nvcc}" arch="${GRCN_PTX_ARCH:-compute_70}" cu name hash ptx
    local -a extra=()
    if [[ -n "${NVCC_FLAGS:-}" ]]; then read -r -a extra <<<"$NVCC_FLAGS"; fi
    local sources=("$here"/*.cu)
    if ((${#sources[@]} > 0)) && ! command -v "$nvcc" >/dev/null 2>&1; then
        echo "$nvcc not found: install the CUDA toolkit or set NVCC" >&2
        exit 1
    fi
    mkdir -p "$here/ptx"
    tmp="$(mktemp)" # global: the EXIT trap runs after this function has returned
    trap 'rm -f "$tmp"' EXIT
    for cu in "${sources[@]}"; do
        name="$(basename "$cu" .cu)"
        hash="$(source_hash "$here" "$name.cu")"
        "$nvcc" -ptx -arch="$arch" -std=c++17 -O3 \
            -ftz=false -prec-div=true -prec-sqrt=true -fmad=true \
            -I "$here" "${extra[@]}" -o "$tmp" "$cu"
        { printf '%s%s\n' "$header_line" "$hash"; cat -- "$tmp"; } >"$here/ptx/$name.ptx"
        echo "ptx/$name.ptx ($arch, sources $hash)"
    done
    for ptx in "$here"/ptx/*.ptx; do
        name="$(basename "$ptx" .ptx)"
        if [[ ! -f "$here/$name.cu" ]]; then
            rm -- "$ptx"
            echo "removed ptx/$name.ptx: no $name.cu"
        fi
    done
}

case "${1:-}" in
    --hashes) print_hashes "${2:-$here}" ;;
    --check) check "${2:-$here}" ;;
    "") build ;;
    *)
        echo "usage: kernels/build.sh [--hashes [DIR] | --check [DIR]]" >&2
        exit 2
        ;;
esac
