#!/usr/bin/env python3
"""Puts the JSON of `grcn bench ops` and of bench/torch_ops.py side by side.

    python3 bench/compare.py OURS.json TORCH.json [--markdown FILE] [--note TEXT]...

Prints an aligned table and, with --markdown, writes it as a Markdown table. The ratio is
PyTorch median / our median: above 1 we are faster. A PyTorch row named `X@variant`
(e.g. gemm_1024@onednn) is the same case X computed another way in PyTorch; it is
compared with our X. A case that failed (or is not implemented) on either side gets no
ratio. The last line is the geometric mean of the ratios over the cases both sides ran,
each case against PyTorch's fastest way of computing it (its own row or a variant).
Needs only the standard library.
"""
import argparse
import json
import math
import sys


def load(path):
    with open(path) as f:
        return {r["name"]: r for r in json.load(f)}


def fmt(v, digits):
    return "-" if v is None else f"{v:.{digits}f}"


def short_error(r):
    if r is None:
        return "missing"
    e = r.get("error") or ""
    return "not implemented" if "not implemented" in e else "error"


def rows(ours, torch):
    """(label, ours row, torch row, is a torch variant) in our suite order, each variant after its case."""
    names = list(ours)
    names += [n for n in torch if "@" not in n and n not in ours]
    out = []
    for name in names:
        out.append((name, ours.get(name), torch.get(name), False))
        for t in torch:
            if t.startswith(name + "@"):
                out.append((f"{name} (torch {t.split('@', 1)[1]})", ours.get(name), torch[t], True))
    return out


def table(ours, torch):
    header = ["case", "ours ms", "torch ms", "ratio", "ours GFLOP/s", "torch GFLOP/s"]
    body = []
    best = {}  # case -> ratio against PyTorch's fastest way of computing it
    for label, o, t, variant in rows(ours, torch):
        ok_o = o is not None and o.get("error") is None
        ok_t = t is not None and t.get("error") is None
        ratio = t["median_ms"] / o["median_ms"] if ok_o and ok_t and o["median_ms"] > 0 else None
        if ratio is not None:
            case = o["name"]
            best[case] = min(best.get(case, ratio), ratio)
        body.append([
            label,
            fmt(o["median_ms"], 2) if ok_o else short_error(o),
            fmt(t["median_ms"], 2) if ok_t else short_error(t),
            fmt(ratio, 2),
            fmt(o.get("gflops"), 1) if ok_o else "-",
            fmt(t.get("gflops"), 1) if ok_t else "-",
        ])
    ratios = list(best.values())
    geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios)) if ratios else None
    return header, body, geo, len(ratios)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ours")
    ap.add_argument("torch")
    ap.add_argument("--markdown", help="write the table as Markdown to this file")
    ap.add_argument("--note", action="append", default=[], help="a line to put above the Markdown table (repeatable)")
    args = ap.parse_args()
    ours, torch = load(args.ours), load(args.torch)
    header, body, geo, paired = table(ours, torch)
    summary = (f"geometric mean of the ratio over the {paired} cases both sides ran, each against "
               f"PyTorch's fastest variant: {geo:.2f}"
               if geo is not None else "no case ran on both sides")

    widths = [max(len(str(r[i])) for r in [header] + body) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
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
                f.write("| " + " | ".join(f"`{r[0]}`" if i == 0 else str(c) for i, c in enumerate(r)) + " |\n")
            f.write("\n" + summary + " (ratio = PyTorch median / ours; above 1 we are faster).\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
