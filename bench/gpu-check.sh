#!/usr/bin/env bash
# The GPU check: everything that needs a real NVIDIA GPU, in one run of under 8 minutes on a
# machine with the driver, PyTorch and torchvision but no .NET SDK.
#
#   bench/gpu-check.sh --publish            here (with the SDK): publish grcn self-contained for
#                                           linux-x64, packed into gpu/grcn.tar.gz, and copy the
#                                           shared golden examples into gpu/golden-examples
#                                           (gpu/ is git-ignored; carry it to the GPU machine)
#   bench/gpu-check.sh --run [--out DIR]    there: unpack, then
#        1. grcn devices
#        2. grcn golden tests/golden gpu/golden-examples --device cuda   (every golden fixture)
#        3. grcn crosscheck --device cuda --large                        (every op against the
#           CPU backend at the detector's sizes: VGG16 convolutions, 2000 RoIs, 12000 boxes)
#        4. grcn bench ops --device cuda, then bench/torch_ops.py --cuda (TF32 off) and
#           --cuda --tf32, and bench/compare.py's ratio tables (PyTorch median / ours)
#      writing logs, JSON and compare.md / compare_tf32.md into DIR (default $OUT, else gpu/out).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-}
shift || true
case "$mode" in
--publish)
    rm -rf gpu/publish && mkdir -p gpu
    dotnet publish src/GRcn.Cli -c Release -r linux-x64 --self-contained true -p:InvariantGlobalization=true \
        -p:DebugType=none -o gpu/publish -v quiet -nologo
    tar -C gpu/publish -czf gpu/grcn.tar.gz .
    rm -rf gpu/publish gpu/golden-examples
    if [[ -d ../shared/golden-examples ]]; then cp -r ../shared/golden-examples gpu/golden-examples; fi
    du -sh gpu/grcn.tar.gz
    ;;
--run)
    out=${OUT:-gpu/out}
    if [[ "${1:-}" == --out ]]; then out=$2; fi
    mkdir -p "$out" /tmp/grcn
    tar -C /tmp/grcn -xzf gpu/grcn.tar.gz
    grcn=/tmp/grcn/grcn
    python=${PYTHON:-python3}
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt" || true
    status=0
    echo "== grcn devices"
    "$grcn" devices | tee "$out/devices.txt"
    echo "== golden fixtures on cuda"
    golden=(tests/golden)
    [[ -d gpu/golden-examples ]] && golden+=(gpu/golden-examples)
    "$grcn" golden "${golden[@]}" --device cuda --quiet 2>&1 | tee "$out/golden.txt" || status=1
    echo "== crosscheck against the CPU backend (large)"
    "$grcn" crosscheck --device cuda --large --json "$out/crosscheck.json" 2>&1 | tee "$out/crosscheck.txt" || status=1
    echo "== op suite: grcn bench ops --device cuda"
    "$grcn" bench ops --device cuda --json "$out/ours.json" --min-time 0.3 2>&1 | tee "$out/ours.txt" || status=1
    echo "== op suite: bench/torch_ops.py --cuda (TF32 off)"
    "$python" bench/torch_ops.py --cuda --json "$out/torch.json" --min-time 0.3 2>&1 | tee "$out/torch.txt" || status=1
    echo "== op suite: bench/torch_ops.py --cuda --tf32"
    "$python" bench/torch_ops.py --cuda --tf32 --json "$out/torch_tf32.json" --min-time 0.3 2>&1 | tee "$out/torch_tf32.txt" || status=1
    gpu=$(head -n1 "$out/gpu.txt" 2>/dev/null || echo "GPU")
    "$python" bench/compare.py "$out/ours.json" "$out/torch.json" --markdown "$out/compare.md" \
        --note "Op suite on $gpu, GRcn.Kernels (ILGPU) vs PyTorch on CUDA, FP32 with TF32 off, $(date -u '+%Y-%m-%d %H:%M UTC')." || status=1
    "$python" bench/compare.py "$out/ours.json" "$out/torch_tf32.json" --markdown "$out/compare_tf32.md" \
        --note "The same, PyTorch with TF32 on (matmul and cuDNN)." || status=1
    exit "$status"
    ;;
*)
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
