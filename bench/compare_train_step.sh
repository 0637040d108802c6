#!/usr/bin/env bash
# One training step and one inference of grcn and of torchvision's Faster R-CNN on the same
# backbone, widths, anchors, image size and thread count, run back to back (alternating,
# --runs times) so both see the same machine load; prints a Markdown table with the ratios.
#   bench/compare_train_step.sh [--backbone vgg16] [--width 0.25] [--size 320] [--threads 2] [--runs 2]
set -euo pipefail
cd "$(dirname "$0")/.."
backbone=vgg16 width=0.25 size=320 threads=2 runs=2 variant=faster-rcnn+roi-align layout=c4
while [ $# -gt 0 ]; do
  case "$1" in
    --backbone) backbone=$2; shift 2 ;;
    --width) width=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --variant) variant=$2; shift 2 ;;
    --layout) layout=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
dotnet build src/GRcn.Cli -c Release -v q -nologo >/dev/null
grcn=(dotnet src/GRcn.Cli/bin/Release/net10.0/grcn.dll)
out=$(mktemp)
for _ in $(seq "$runs"); do
  "${grcn[@]}" bench train-step --variant "$variant" --backbone "$backbone" --width "$width" --size "$size" --threads "$threads" --json >>"$out"
  /usr/bin/python3 bench/torch_train_step.py --backbone "$backbone" --layout "$layout" --width "$width" --size "$size" --threads "$threads" >>"$out"
done
/usr/bin/python3 - "$out" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ours = [r for r in rows if r.get("engine") == "grcn"]
peer = [r for r in rows if "peer" in r]
med = lambda rs, k: statistics.median(r[k] for r in rs)
o, p = ours[0], peer[0]
print(f"| {o['variant']} on {o['backbone']} x{o['width']}, {o['size']}x{o['size']}, batch {o['batch']}, {o['threads']} threads | grcn ms | {p['peer']} ms | torch / grcn |")
print("| --- | ---: | ---: | ---: |")
for k, name in (("train_step_ms", "training step (median)"), ("inference_ms", "inference (median)")):
    a, b = med(ours, k), med(peer, k)
    print(f"| {name} | {a:.0f} | {b:.0f} | {b / a:.2f}x |")
PY
rm -f "$out"
