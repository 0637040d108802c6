#!/usr/bin/env bash
# Runs the op suite in GRcn.Kernels (`grcn bench ops`) and in PyTorch (bench/torch_ops.py),
# one after the other with the same options, and prints the ratio table of bench/compare.py
# (PyTorch median / ours: above 1 we are faster); writes ours.N.json, torch.N.json per run
# and compare.md (Markdown, with the machine and the load averages) into the output folder.
#
#   bench/compare.sh [--out DIR] [--runs N] [--threads N] [--filter NAME]... [--repeats N]
#                    [--warmup N] [--min-time S] [--max-repeats N]
#
# --out defaults to artifacts/bench, --threads to 2 (both suites use that many threads),
# --runs to 1 (more runs alternate ours and PyTorch, which evens out bursts of other load);
# every other option goes to both suites. PYTHON picks the interpreter that has torch
# (default /usr/bin/python3).
set -euo pipefail
cd "$(dirname "$0")/.."

out=artifacts/bench
threads=2
runs=1
pass=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) out=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --filter|--repeats|--warmup|--min-time|--max-repeats) pass+=("$1" "$2"); shift 2 ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "compare.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
python=${PYTHON:-/usr/bin/python3}
mkdir -p "$out"

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
model=$(lscpu | sed -n 's/^Model name: *//p' | head -n1)
flags=$(grep -m1 '^flags' /proc/cpuinfo)
has() { [[ " $flags " == *" $1 "* ]] && echo yes || echo no; }

if ! build_log=$(dotnet build src/GRcn.Cli -c Release -v quiet -nologo 2>&1); then
    echo "$build_log" >&2
    echo "compare.sh: building grcn failed" >&2
    exit 2
fi
grcn=(dotnet src/GRcn.Cli/bin/Release/net10.0/grcn.dll)

status=0
files=()
loads=()
for ((i = 1; i <= runs; i++)); do
    load0=$(loadavg)
    echo "== run $i/$runs: grcn bench ops (load average $load0)"
    "${grcn[@]}" bench ops --threads "$threads" --json "$out/ours.$i.json" ${pass[@]+"${pass[@]}"} || status=$?
    load1=$(loadavg)
    echo "== run $i/$runs: bench/torch_ops.py (load average $load1)"
    "$python" bench/torch_ops.py --threads "$threads" --json "$out/torch.$i.json" ${pass[@]+"${pass[@]}"} || status=$?
    files+=("$out/ours.$i.json" "$out/torch.$i.json")
    loads+=("run $i: $load0 before ours, $load1 before PyTorch")
done
load2=$(loadavg)
echo "== ratio = PyTorch median / ours (above 1: we are faster); load average at the end $load2"

torch_version=$("$python" -c 'import torch, torchvision; print(f"torch {torch.__version__}, torchvision {torchvision.__version__}")')
"$python" bench/compare.py "${files[@]}" --markdown "$out/compare.md" \
    --note "Op suite, GRcn.Kernels vs PyTorch ($torch_version), $threads threads each, $(date -u '+%Y-%m-%d %H:%M UTC')." \
    --note "" \
    --note "- Machine: $model, $(nproc) logical cores, AVX2 $(has avx2), FMA $(has fma), AVX-512 $(has avx512f)." \
    --note "- Load average (1/5/15 min): $(printf '%s; ' "${loads[@]}")at the end $load2." \
    --note "- Command: bench/compare.sh --runs $runs --threads $threads ${pass[*]+"${pass[*]}"}"
echo "wrote ${files[*]} and $out/compare.md"
exit "$status"
