#!/usr/bin/env python3
"""The op benchmark suite of bench/GRcn.Bench.Cases (OpSuite.cs) in PyTorch / torchvision.

Same case names, shapes, FLOP formulas, measurement rule and JSON schema as
`grcn bench ops`, so bench/compare.py can put the two side by side:

    /usr/bin/python3 bench/torch_ops.py [--threads 2] [--json FILE] [--filter NAME]...
        [--repeats 5] [--warmup 2] [--min-time 1.0] [--max-repeats 200] [--cuda [--tf32]] [--list]
        [--system-malloc]

Measurement rule: inputs are made once (seeded random normal; RoIs and boxes uniformly
inside the image), `warmup` untimed iterations run, then iterations are timed one by one
until at least `repeats` were timed and `min-time` seconds have passed, or `max-repeats`
were timed. A forward-only case runs under torch.no_grad(); a "fwdbwd" case runs the
forward with autograd and then torch.autograd.grad for every input the C# case
differentiates. With --cuda everything lives on the GPU and each iteration is timed with
CUDA events after a synchronize. On CUDA, matrix products and cuDNN convolutions run in
exact FP32 (TF32 off: torch.backends.cuda.matmul.allow_tf32 and
torch.backends.cudnn.allow_tf32 both False), the precision our kernels compute in; --tf32
turns both on, for the figure beside it.

Besides the shared cases this suite has `gemm_1024@onednn` (CPU only): the same GEMM as
a 1×1 oneDNN convolution. Debian's torch calls the system BLAS for torch.mm,
which is the netlib reference BLAS unless an optimised one is installed; the @onednn
variant is the fair yardstick for our GEMM then. compare.py pairs `X@variant` with our X.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time
import zlib

# glibc malloc hands large freed blocks back to the kernel (munmap / trim), so every
# iteration that allocates a big output page-faults fresh zeroed pages: on this VM that made
# a 4.5 ms convolution take 27 ms, depending on what ran before. Our CPU device caches freed
# blocks; to compare kernels rather than allocators, PyTorch gets a malloc that keeps freed
# memory too: the script re-executes itself once with these tunables (not with
# --system-malloc, nor when GLIBC_TUNABLES is already set). They must be set at process start.
MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=1000000000:glibc.malloc.trim_threshold=2000000000"
if (__name__ == "__main__" and sys.platform.startswith("linux") and "--system-malloc" not in sys.argv
        and "GLIBC_TUNABLES" not in os.environ):
    os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, "GLIBC_TUNABLES": MALLOC_TUNABLES})

import torch  # noqa: E402 (after the re-exec above)
import torch.nn.functional as F  # noqa: E402
import torchvision.ops as tvops  # noqa: E402

IMAGE_W, IMAGE_H = 800.0, 600.0  # RoI cases: the 38×50 feature map is its stride-16 map
ROI_MIN_SIDE, ROI_MAX_SIDE = 16.0, 400.0


# ------------------------------------------------------------------------------ FLOPs
# A multiply-add counts as 2; only matrix products are counted (as FlopCount.cs).

def gemm_flops(m, n, k):
    """GEMM C (M×N) = A (M×K) · B (K×N): 2·M·N·K."""
    return 2.0 * m * n * k


def conv_flops(n, c, o, oh, ow, kh, kw, backward):
    """Conv forward 2·N·O·OH·OW·C·kh·kw; forward + backward (dx, dw) 3× that."""
    return (3.0 if backward else 1.0) * 2.0 * n * o * oh * ow * c * kh * kw


def attention_flops(k, q, n, m, c, d, backward):
    """Keys 2·N·M·C·D, queries 2·K·Q·C·D, logits 2·K·Q·M·D, values 2·K·Q·M·C; fwd + bwd 3×."""
    return (3.0 if backward else 1.0) * (2.0 * n * m * c * d + 2.0 * k * q * c * d + 2.0 * k * q * m * d + 2.0 * k * q * m * c)


# ------------------------------------------------------------------------------ inputs

class Inputs:
    """Seeded input factory for one case (seed: CRC-32 of the case name)."""

    def __init__(self, name, device):
        self.device = device
        self.gen = torch.Generator().manual_seed(zlib.crc32(name.encode("utf-8")))

    def normal(self, *shape, scale=1.0, grad=False):
        t = (torch.randn(*shape, generator=self.gen, dtype=torch.float32) * scale).to(self.device)
        return t.requires_grad_(grad)

    def uniform(self, *shape):
        return torch.rand(*shape, generator=self.gen, dtype=torch.float32).to(self.device)

    def boxes(self, count, width, height, min_side, max_side):
        """(K, 4) [x1, y1, x2, y2]: sides uniform in [min, min(max, image)], position uniform inside."""
        u = torch.rand(count, 4, generator=self.gen, dtype=torch.float32)
        w = min_side + u[:, 0] * (min(max_side, width) - min_side)
        h = min_side + u[:, 1] * (min(max_side, height) - min_side)
        x1 = u[:, 2] * (width - w)
        y1 = u[:, 3] * (height - h)
        return torch.stack([x1, y1, x1 + w, y1 + h], 1).to(self.device)

    def rois(self, count, width, height, min_side, max_side):
        """(K, 5) [0, x1, y1, x2, y2] of image 0."""
        b = self.boxes(count, width, height, min_side, max_side)
        return torch.cat([torch.zeros(count, 1, device=self.device), b], 1)


# ------------------------------------------------------------------------------ cases

CASES = []


def case(name, flops=None, cpu_only=False):
    """Registers prepare(inputs) -> iteration callable under `name` (cpu_only: skipped with --cuda)."""
    def register(prepare):
        CASES.append((name, flops, prepare, cpu_only))
        return prepare
    return register


@case("gemm_1024", gemm_flops(1024, 1024, 1024))
def _gemm(inp):
    a, b = inp.normal(1024, 1024), inp.normal(1024, 1024)

    def run():
        with torch.no_grad():
            torch.mm(a, b)
    return run


@case("gemm_1024@onednn", gemm_flops(1024, 1024, 1024), cpu_only=True)
def _gemm_onednn(inp):
    # C = A·B as a 1×1 oneDNN convolution: x (1, K, 1, M) = Aᵀ, w (N, K, 1, 1) = Bᵀ, y (1, N, 1, M) = (A·B)ᵀ.
    # Called directly: F.conv2d would send a 1×1 kernel on one thread to im2col + the system BLAS.
    x = inp.normal(1, 1024, 1, 1024)
    w = inp.normal(1024, 1024, 1, 1)

    def run():
        with torch.no_grad():
            torch.mkldnn_convolution(x, w, None, [0, 0], [1, 1], [1, 1], 1)
    return run


def conv_case(name, c, o, h, w, k, stride, pad, backward):
    oh = (h + 2 * pad - k) // stride + 1
    ow = (w + 2 * pad - k) // stride + 1

    @case(name, conv_flops(1, c, o, oh, ow, k, k, backward))
    def _conv(inp):
        x = inp.normal(1, c, h, w, grad=backward)
        weight = inp.normal(o, c, k, k, grad=backward)
        bias = inp.normal(o, grad=backward)
        if not backward:
            def run():
                with torch.no_grad():
                    F.conv2d(x, weight, bias, stride=stride, padding=pad)
            return run
        grad_y = inp.normal(1, o, oh, ow)

        def run():
            y = F.conv2d(x, weight, bias, stride=stride, padding=pad)
            torch.autograd.grad(y, [x, weight, bias], grad_y)
        return run


conv_case("conv3x3_512_38x50_fwd", 512, 512, 38, 50, 3, 1, 1, False)
conv_case("conv3x3_512_38x50_fwdbwd", 512, 512, 38, 50, 3, 1, 1, True)
conv_case("conv3x3_64_150x200_fwd", 64, 64, 150, 200, 3, 1, 1, False)
conv_case("conv3x3_3_64_300x400_fwd", 3, 64, 300, 400, 3, 1, 1, False)
conv_case("conv2x2s2_512_76x100_fwdbwd", 512, 512, 76, 100, 2, 2, 0, True)


def maxpool_case(name, stride):
    c, h, w = 512, 76, 100
    oh, ow = (h - 2) // stride + 1, (w - 2) // stride + 1

    @case(name)
    def _pool(inp):
        x = inp.normal(1, c, h, w, grad=True)
        grad_y = inp.normal(1, c, oh, ow)

        def run():
            y = F.max_pool2d(x, 2, stride)
            torch.autograd.grad(y, [x], grad_y)
        return run


maxpool_case("maxpool_2s2_512_76x100_fwdbwd", 2)
maxpool_case("maxpool_2s1_512_76x100_fwdbwd", 1)


def roi_case(name, count, backward, align):
    def op(x, rois):
        if align:
            return tvops.roi_align(x, rois, (7, 7), spatial_scale=1.0 / 16, sampling_ratio=2, aligned=True)
        return tvops.roi_pool(x, rois, (7, 7), spatial_scale=1.0 / 16)

    @case(name)
    def _roi(inp):
        x = inp.normal(1, 512, 38, 50, grad=backward)
        rois = inp.rois(count, IMAGE_W, IMAGE_H, ROI_MIN_SIDE, ROI_MAX_SIDE)
        if not backward:
            def run():
                with torch.no_grad():
                    op(x, rois)
            return run
        grad_y = inp.normal(count, 512, 7, 7)

        def run():
            y = op(x, rois)
            torch.autograd.grad(y, [x], grad_y)
        return run


roi_case("roi_align_2000_fwd", 2000, False, True)
roi_case("roi_align_128_fwdbwd", 128, True, True)
roi_case("roi_pool_2000_fwd", 2000, False, False)
roi_case("roi_pool_128_fwdbwd", 128, True, False)


def context_attention(p, g, batch_index, w_q, w_k, heads):
    """ops.md context_attention: y[k] = P + concat_h softmax(P Wq_hᵀ (V Wk_hᵀ)ᵀ / √dk) V_h, V = g[batch_index[k]]."""
    K, C, Qh, Qw = p.shape
    N, _, Mh, Mw = g.shape
    D = w_q.shape[0]
    dk, cv = D // heads, C // heads
    Q, M = Qh * Qw, Mh * Mw
    P = p.reshape(K, C, Q).transpose(1, 2)                                # K,Q,C (row q = i·Qw + j)
    V = g.reshape(N, C, M).transpose(1, 2)                                # N,M,C
    keys = V @ w_k.t()                                                    # N,M,D: once per image
    qs = (P @ w_q.t()).reshape(K, Q, heads, dk).transpose(1, 2)           # K,H,Q,dk
    ks = keys[batch_index].reshape(K, M, heads, dk).transpose(1, 2)       # K,H,M,dk
    vs = V[batch_index].reshape(K, M, heads, cv).transpose(1, 2)          # K,H,M,cv
    att = torch.softmax(qs @ ks.transpose(-1, -2) / math.sqrt(dk), dim=-1)  # K,H,Q,M
    o = (att @ vs).transpose(1, 2).reshape(K, Q, C)                       # concat heads
    return (P + o).transpose(1, 2).reshape(K, C, Qh, Qw)


def attention_case(name, rois, channels, dim, heads, roi_side, ctx_side):
    q, m = roi_side * roi_side, ctx_side * ctx_side

    @case(name, attention_flops(rois, q, 1, m, channels, dim, True))
    def _attention(inp):
        p = inp.normal(rois, channels, roi_side, roi_side, grad=True)
        g = inp.normal(1, channels, ctx_side, ctx_side, grad=True)
        batch_index = torch.zeros(rois, dtype=torch.int64, device=inp.device)
        scale = 1.0 / math.sqrt(channels)  # w ~ N(0, 1/C): logits stay O(1), as in OpSuite.cs
        w_q = inp.normal(dim, channels, scale=scale, grad=True)
        w_k = inp.normal(dim, channels, scale=scale, grad=True)
        grad_y = inp.normal(rois, channels, roi_side, roi_side)

        def run():
            y = context_attention(p, g, batch_index, w_q, w_k, heads)
            torch.autograd.grad(y, [p, g, w_q, w_k], grad_y)
        return run


attention_case("attention_128_fwdbwd", 128, 512, 512, 8, 7, 14)


@case("nms_12000")
def _nms(inp):
    boxes = inp.boxes(12000, 600.0, 600.0, 1.0, 100.0)
    scores = inp.uniform(12000)

    def run():
        tvops.nms(boxes, scores, 0.7)
    return run


# ------------------------------------------------------------------------------ measuring

def measure(run, args, cuda):
    """Warm-up, then timed iterations by the suite's rule; returns milliseconds per iteration."""
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(args.warmup):
        run()
    sync()
    times = []
    start = time.perf_counter()
    while len(times) < args.max_repeats and (len(times) < args.repeats or time.perf_counter() - start < args.min_time):
        if cuda:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            run()
            end.record()
            end.synchronize()
            times.append(begin.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            run()
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def run_case(name, flops, prepare, args, device, cuda):
    try:
        run = prepare(Inputs(name, device))
        times = measure(run, args, cuda)
        median = statistics.median(times)
        gflops = flops / (median * 1e-3) / 1e9 if flops is not None else None
        return dict(name=name, median_ms=round(median, 4), min_ms=round(min(times), 4),
                    gflops=None if gflops is None else round(gflops, 4), repeats=len(times), error=None)
    except Exception as e:  # a case that cannot run is an error row, not a crash
        return dict(name=name, median_ms=None, min_ms=None, gflops=None, repeats=0, error=f"{type(e).__name__}: {e}")
    finally:
        if cuda:
            torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--filter", action="append", default=[], help="run only cases whose name contains this text (repeatable)")
    ap.add_argument("--repeats", type=int, default=5, help="timed iterations per case, at least")
    ap.add_argument("--warmup", type=int, default=2, help="untimed iterations per case first")
    ap.add_argument("--min-time", type=float, default=1.0, help="keep timing a case until this many seconds have passed")
    ap.add_argument("--max-repeats", type=int, default=200, help="timed iterations per case, at most")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU)")
    ap.add_argument("--cuda", action="store_true", help="run on the GPU (cuda:0), timing with CUDA events")
    ap.add_argument("--tf32", action="store_true", help="with --cuda: allow TF32 in matmul and cuDNN (default: exact FP32)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--system-malloc", action="store_true",
                    help="keep glibc's default malloc (which returns big freed blocks to the kernel) instead of MALLOC_TUNABLES")
    args = ap.parse_args()
    if args.repeats < 1 or args.warmup < 0 or args.min_time < 0 or args.max_repeats < args.repeats or args.threads < 1:
        ap.error("need --repeats >= 1, --warmup >= 0, --min-time >= 0, --max-repeats >= --repeats, --threads >= 1")

    cases = [(name, flops, prepare) for name, flops, prepare, cpu_only in CASES
             if (not args.filter or any(f.lower() in name.lower() for f in args.filter)) and not (cpu_only and args.cuda)]
    if not cases:
        ap.error(f"no case matches {', '.join(args.filter)}")
    if args.list:
        for name, _, _ in cases:
            print(name)
        return 0

    torch.set_num_threads(args.threads)
    if args.cuda:
        if not torch.cuda.is_available():
            print("torch_ops.py: --cuda given but torch.cuda.is_available() is False", file=sys.stderr)
            return 2
        device = torch.device("cuda:0")
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32
        where = f"cuda:0 ({torch.cuda.get_device_name(0)}, TF32 {'on' if args.tf32 else 'off'})"
    else:
        device = torch.device("cpu")
        where = f"cpu ({torch.get_num_threads()} threads)"
    print(f"torch {torch.__version__}, torchvision {__import__('torchvision').__version__}, device {where}, "
          f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '(unset)')}: "
          f"{len(cases)} cases; warmup {args.warmup}, then at least {args.repeats} repeats and {args.min_time:g} s "
          f"per case (at most {args.max_repeats} repeats)")
    print(f"{'case':<32} {'median ms':>11} {'min ms':>11} {'GFLOP/s':>9} {'repeats':>7}")
    results = []
    for name, flops, prepare in cases:
        r = run_case(name, flops, prepare, args, device, args.cuda)
        results.append(r)
        if r["error"] is not None:
            print(f"{name:<32} ERROR: {r['error']}")
        else:
            g = "-" if r["gflops"] is None else f"{r['gflops']:.1f}"
            print(f"{name:<32} {r['median_ms']:>11.3f} {r['min_ms']:>11.3f} {g:>9} {r['repeats']:>7}")
        sys.stdout.flush()
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
            f.write("\n")
    failed = sum(r["error"] is not None for r in results)
    print(f"{len(results) - failed} measured, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
