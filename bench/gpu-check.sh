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
#        5. grcn bench train-step --device cuda beside bench/torch_train_step.py --device cuda:
#           VGG16 at full width, 600×1000, batch 2 (training step and inference)
#        6. the README's main job, grcn train --device cuda (time and AP50; at most 5 minutes)
#      writing logs, JSON and compare.md / compare_tf32.md / train_step.md into DIR (default
#      $OUT, else gpu/out).
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
    echo "== training step: VGG16 ×1, 600×1000, batch 2 (grcn, then torchvision)"
    step=(--backbone vgg16 --width 1 --size 600 --image-width 1000 --batch 2 --anchors 128 256 512)
    "$grcn" bench train-step --device cuda "${step[@]}" --json 2>&1 | tee "$out/train_step.jsonl" || status=1
    "$python" bench/torch_train_step.py --device cuda "${step[@]}" 2>&1 | tee -a "$out/train_step.jsonl" || status=1
    "$python" - "$out/train_step.jsonl" "$gpu" >"$out/train_step.md" <<'PY' || status=1
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
ours = next(r for r in rows if r.get("engine") == "grcn")
peer = next(r for r in rows if "peer" in r)
print(f"Training step and inference on {sys.argv[2]}: VGG16 ×1, 600×1000, batch 2, FP32 (TF32 off).\n")
print(f"| | grcn ms | {peer['peer']} ms | torch / grcn |")
print("| --- | ---: | ---: | ---: |")
for k, name in (("train_step_ms", "training step (median)"), ("inference_ms", "inference (median)")):
    print(f"| {name} | {ours[k]:.1f} | {peer[k]:.1f} | {peer[k] / ours[k]:.2f}x |")
PY
    cat "$out/train_step.md" || true
    echo "== the main job on cuda: grcn train --device cuda (at most 5 minutes)"
    timeout 300 "$grcn" train --device cuda --plain --out "$out/train" 2>&1 | tail -n 5 | tee "$out/train.txt" || status=1
    exit "$status"
    ;;
*)
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
