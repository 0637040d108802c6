#!/usr/bin/env python3
"""Puts the JSON of `grcn bench ops` and of bench/torch_ops.py side by side.

    python3 bench/compare.py OURS.json TORCH.json [OURS2.json TORCH2.json ...]
                             [--markdown FILE] [--note TEXT]...

Each pair of files is one run of both suites. Prints an aligned table and, with
--markdown, writes it as a Markdown table. Per case:

- ours ms / torch ms: the median iteration time (with several runs, the median over the
  runs of each run's median);
- ratio: torch ms / ours ms, above 1 we are faster; with several runs also the lowest and
  highest per-run ratio, a measure of how much other load on the machine moved things;
- ratio of mins: the fastest torch iteration / our fastest iteration over all runs (the
  least disturbed by other load);
- GFLOP/s at the median time, where the case has a FLOP count.

A PyTorch row named `X@variant` (e.g. gemm_1024@onednn) is case X computed another way in
PyTorch; it is compared with our X. A case that failed (or is not implemented) on either
side gets no ratio. The last line is the geometric mean of the ratios over the cases both
sides ran, each case against PyTorch's fastest way of computing it (its row or a variant).
Needs only the standard library.
"""
import argparse
import json
import math
import statistics
import sys


def load(path):
    with open(path) as f:
        return {r["name"]: r for r in json.load(f)}


def fmt(v, digits):
    return "-" if v is None else f"{v:.{digits}f}"


def merge(runs, name):
    """One case over several runs: median of the medians, min of the mins, GFLOP/s at the merged median."""
    rs = [run.get(name) for run in runs]
    if any(r is None for r in rs):
        return None if all(r is None for r in rs) else {"name": name, "error": "missing in some runs"}
    bad = [r for r in rs if r.get("error") is not None]
    if bad:
        return bad[0]
    median = statistics.median(r["median_ms"] for r in rs)
    g = rs[0].get("gflops")
    return {
        "name": name,
        "median_ms": median,
        "min_ms": min(r["min_ms"] for r in rs),
        "gflops": None if g is None else g * rs[0]["median_ms"] / median,
        "runs": rs,
        "error": None,
    }


def short_error(r):
    if r is None:
        return "missing"
    return "not implemented" if "not implemented" in (r.get("error") or "") else "error"


def rows(ours_runs, torch_runs):
    """(label, ours, torch, case name) in our suite order, each PyTorch variant after its case."""
    ours_names = list(dict.fromkeys(n for run in ours_runs for n in run))
    torch_names = list(dict.fromkeys(n for run in torch_runs for n in run))
    names = ours_names + [n for n in torch_names if "@" not in n and n not in ours_names]
    out = []
    for name in names:
        o = merge(ours_runs, name)
        out.append((name, o, merge(torch_runs, name), name))
        for t in torch_names:
            if t.startswith(name + "@"):
                out.append((f"{name} (torch {t.split('@', 1)[1]})", o, merge(torch_runs, t), name))
    return out


def table(ours_runs, torch_runs):
    several = len(ours_runs) > 1
    header = ["case", "ours ms", "torch ms", "ratio"] + (["ratio range"] if several else []) + \
             ["ratio of mins", "ours GFLOP/s", "torch GFLOP/s"]
    body = []
    best = {}  # case -> ratio against PyTorch's fastest way of computing it
    for label, o, t, case in rows(ours_runs, torch_runs):
        ok_o = o is not None and o.get("error") is None
        ok_t = t is not None and t.get("error") is None
        both = ok_o and ok_t and o["median_ms"] > 0 and o["min_ms"] > 0
        ratio = t["median_ms"] / o["median_ms"] if both else None
        ratio_min = t["min_ms"] / o["min_ms"] if both else None
        if ratio is not None:
            best[case] = min(best.get(case, ratio), ratio)
        row = [label,
               fmt(o["median_ms"], 2) if ok_o else short_error(o),
               fmt(t["median_ms"], 2) if ok_t else short_error(t),
               fmt(ratio, 2)]
        if several:
            per_run = [rt["median_ms"] / ro["median_ms"] for ro, rt in zip(o["runs"], t["runs"])] if both else []
            row.append(f"{min(per_run):.2f}–{max(per_run):.2f}" if per_run else "-")
        row += [fmt(ratio_min, 2),
                fmt(o.get("gflops"), 1) if ok_o else "-",
                fmt(t.get("gflops"), 1) if ok_t else "-"]
        body.append(row)
    ratios = list(best.values())
    geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios)) if ratios else None
    return header, body, geo, len(ratios)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", help="OURS.json TORCH.json, one pair per run")
    ap.add_argument("--markdown", help="write the table as Markdown to this file")
    ap.add_argument("--note", action="append", default=[], help="a line to put above the Markdown table (repeatable)")
    args = ap.parse_args()
    if len(args.files) % 2:
        ap.error("give the JSON files in pairs: OURS.json TORCH.json per run")
    ours_runs = [load(p) for p in args.files[0::2]]
    torch_runs = [load(p) for p in args.files[1::2]]
    header, body, geo, paired = table(ours_runs, torch_runs)
    runs = len(ours_runs)
    summary = (f"geometric mean of the ratio over the {paired} cases both sides ran, each against "
               f"PyTorch's fastest variant: {geo:.2f}" if geo is not None else "no case ran on both sides")
    if runs > 1:
        summary += f" ({runs} runs)"

    widths = [max(len(str(r[i])) for r in [header] + body) for i in range(len(header))]

    def line(r):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    print(line(header))
    for r in body:
        print(line(r))
    print(summary)

    if args.markdown:
        with open(args.markdown, "w") as f:
            for n in args.note:
                f.write(n + "\n")
            if args.note:
                f.write("\n")
            f.write("| " + " | ".join(header) + " |\n")
            f.write("| --- |" + " ---: |" * (len(header) - 1) + "\n")
            for r in body:
                f.write("| " + " | ".join(f"`{c}`" if i == 0 else str(c) for i, c in enumerate(r)) + " |\n")
            f.write("\n" + summary + "; ratio = PyTorch median / ours, above 1 we are faster.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
