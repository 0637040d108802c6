#!/usr/bin/python3
"""Generate the golden fixtures of GRcn.Kernels (format ``grcn-golden/1``).

Run with the Debian interpreter that has torch / torchvision::

    /usr/bin/python3 tests/golden/make_golden.py            # writes tests/golden/*.safetensors
    /usr/bin/python3 tests/golden/make_golden.py --out DIR  # elsewhere
    /usr/bin/python3 tests/golden/make_golden.py --check-samples /work/shared/golden-examples

The format is described in ``shared/specs/golden-fixtures.md`` and the semantics in
``shared/specs/ops.md``.  One safetensors file per case; the writer and reader are
in this file (no ``safetensors`` package): 8-byte little-endian header length, compact
JSON header (``__metadata__`` first, then the tensors in insertion order: inputs,
outputs, grad_outputs, grad_inputs), header padded with spaces to a multiple of 8,
then the raw little-endian data, tensors back to back.

How the values are made
-----------------------
* Every case has its own ``torch.Generator`` seeded with ``crc32(case name)``; inputs
  and the upstream gradient ``grad_output.*`` are drawn in float32.
* The reference runs in float64 on those float32 values (inputs cast to double),
  forward with torch / torchvision (``context_attention``: ops.md's formula written in
  torch, autograd), backward with the float32 ``grad_output`` cast to double.
  Outputs and input gradients are stored as float32.  ``nms`` / ``batched_nms`` store
  ``output.keep`` as I64 and have no gradients (tolerance ``{}``: exact match).
* ``torch.set_num_threads(1)``: the output is byte-identical from run to run.

Float32-reference fixtures (``roi_pool_f32_*``, ``roi_align_f32_*``)
--------------------------------------------------------------------
torchvision computes RoIPool bin edges and RoIAlign's RoI geometry, adaptive grid, sample
positions and bilinear weights in the tensor's own type, so a float32 user gets float
arithmetic: a RoI 29 cells long cut into 7 bins ends its last bin at ceil(7*(29f/7f)) = 29,
where double gives 30.  These discrete choices are part of the contract (ops.md), and a
float64 reference cannot pin them, so these fixtures take their outputs and input
gradients from torchvision's float32 kernels (same float32 inputs and grad_output), and
their ``reference`` says so ("torchvision ... roi_pool, float32 ...").  Tolerances: the
roi_pool forward output is a selection and must match exactly (``[0, 0]``); every other
float tensor (roi_pool gradients, roi_align outputs and gradients) follows the rule below.
They deliberately sit on float32/float64 discontinuities, so the float64 self-check below
does not apply to them; instead the generator checks the opposite: every case marked
sensitive (the roi_pool RoI-length cases of 29, 57, 58, 114 cells at 7 bins and 62, 122 at
14 bins; the roi_align cases whose adaptive grid is one sample smaller in float) must have
bins or grids that differ between float32 and float64, and torchvision's float64 result
must FAIL the fixture's tolerance -- so an implementation doing this arithmetic in double
is caught.  At least one RoI-length case must be such a case.

Tolerance rule (the rule the sample fixtures in shared/golden-examples follow exactly)
-------------------------------------------------------------------------------------
For every float tensor ``output.*`` and ``grad_input.*`` (never for inputs or
grad_outputs)::

    rtol = 1e-4
    atol = max(2e-5 * max|want|, 1e-6)      # max over the stored float32 tensor

i.e. an element passes when ``|got - want| <= atol + rtol*|want|``.  The absolute part
is scaled by the tensor's own magnitude (about 170 float32 ulps of its largest
element), so it absorbs float32 accumulation error of any summation order for the
elements that are small or come from cancellation, while ``rtol`` (about 840 ulps)
covers the large ones.  It is still far below any error a wrong index, a wrong
rounding rule, a missing bin/sample or a misrouted gradient produces (those are
O(max|want|)).  The 1e-6 floor only matters for tensors that are all zero or empty
(RoIs completely outside the map, K = 0); it is not reached by any tensor with
max|want| > 0.05.
Check built into the generator: every float fixture is recomputed with torch's own
float32 kernels (a second, independent float32 implementation with a different
summation order) and must pass its tolerance with a worst ratio below 0.5; RoI /
pool forward outputs (pure selections) must even match bit for bit, and NMS keep
lists must be identical in float32 and float64.  This is also what guarantees that
no case sits on a float32/float64 discontinuity (roi_pool bin edges, roi_align's
-1/H border, an IoU equal to the threshold in float32 but not in float64, ...).
"""

import argparse
import hashlib
import json
import math
import os
import struct
import sys
import zlib
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torchvision.ops import batched_nms, nms, roi_align, roi_pool
from torchvision.ops import boxes as tv_boxes

FORMAT = "grcn-golden/1"
REFERENCE = "torch %s, torchvision %s, float64" % (torch.__version__, torchvision.__version__)


def reference_f32(op):
    """The reference string of a float32-reference fixture (the RoI ops' discrete choices)."""
    return "torchvision %s %s, float32 (torch %s): outputs and gradients of the float kernels" % (
        torchvision.__version__, op, torch.__version__)

RTOL = 1e-4
ATOL_REL = 2e-5
ATOL_FLOOR = 1e-6
SELF_CHECK_MAX_RATIO = 0.5

torch.set_num_threads(1)

# ----------------------------------------------------------------------------------
# safetensors writer / reader
# ----------------------------------------------------------------------------------

_DTYPES = {np.dtype("<f4"): "F32", np.dtype("<i8"): "I64"}
_NP_OF = {"F32": np.dtype("<f4"), "I64": np.dtype("<i8")}


def encode_safetensors(tensors, metadata):
    """tensors: list of (name, np.ndarray float32/int64); metadata: dict str->str."""
    header = OrderedDict()
    header["__metadata__"] = OrderedDict((k, str(v)) for k, v in metadata.items())
    chunks = []
    offset = 0
    for name, arr in tensors:
        arr = np.asarray(arr)
        if arr.dtype == np.float32:
            arr = arr.astype("<f4", copy=False)
        elif arr.dtype == np.int64:
            arr = arr.astype("<i8", copy=False)
        else:
            raise TypeError("%s: unsupported dtype %s" % (name, arr.dtype))
        raw = np.ascontiguousarray(arr).tobytes(order="C")
        header[name] = OrderedDict([
            ("dtype", _DTYPES[arr.dtype]),
            ("shape", [int(s) for s in arr.shape]),
            ("data_offsets", [offset, offset + len(raw)]),
        ])
        chunks.append(raw)
        offset += len(raw)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    return struct.pack("<Q", len(hjson)) + hjson + b"".join(chunks)


def decode_safetensors(blob):
    """Returns (metadata dict, OrderedDict name -> np.ndarray)."""
    if len(blob) < 8:
        raise ValueError("file too short")
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"), object_pairs_hook=OrderedDict)
    data = blob[8 + n:]
    meta = header.pop("__metadata__", {})
    out = OrderedDict()
    end_max = 0
    for name, info in header.items():
        dt = _NP_OF[info["dtype"]]
        a, b = info["data_offsets"]
        count = int(np.prod(info["shape"], dtype=np.int64))
        if b - a != count * dt.itemsize or b > len(data):
            raise ValueError("%s: bad data_offsets" % name)
        out[name] = np.frombuffer(data[a:b], dtype=dt).reshape(info["shape"]).copy()
        end_max = max(end_max, b)
    if end_max != len(data):
        raise ValueError("trailing or missing data")
    return meta, out


# ----------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------

def tolerance_of(arr):
    arr = np.asarray(arr, dtype=np.float32)
    m = float(np.abs(arr).max()) if arr.size else 0.0
    return [RTOL, max(ATOL_REL * m, ATOL_FLOOR)]


def worst_ratio(got, want, tol):
    rtol, atol = tol
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return float("inf")
    if want.size == 0:
        return 0.0
    err = np.abs(got - want)
    bound = atol + rtol * np.abs(want)
    # a zero bound (tolerance [0, 0]: exact) gives 0 where equal, inf where not
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(bound > 0, err / np.where(bound > 0, bound, 1.0), np.where(err == 0, 0.0, np.inf))
    return float(ratio.max())


def gen_for(name):
    return torch.Generator().manual_seed(zlib.crc32(name.encode("utf-8")))


def randn(g, *shape, scale=1.0):
    return torch.randn(*shape, generator=g, dtype=torch.float32) * scale


def rand(g, *shape):
    return torch.rand(*shape, generator=g, dtype=torch.float32)


def f32(x):
    return torch.as_tensor(x, dtype=torch.float32)


# ----------------------------------------------------------------------------------
# op runners: run(inputs dict of tensors (float tensors already in the wanted dtype),
# attrs) -> (outputs OrderedDict, names of inputs that get gradients)
# ----------------------------------------------------------------------------------

def _pair(v):
    return tuple(int(t) for t in v)


def run_conv2d(inp, a):
    return OrderedDict(y=F.conv2d(inp["x"], inp["weight"], inp.get("bias"), stride=_pair(a["stride"]),
                                  padding=_pair(a["padding"]), dilation=_pair(a["dilation"])))


def run_max_pool2d(inp, a):
    return OrderedDict(y=F.max_pool2d(inp["x"], _pair(a["kernel"]), _pair(a["stride"]), _pair(a["padding"]),
                                      dilation=1, ceil_mode=bool(a["ceil_mode"])))


def run_roi_pool(inp, a):
    return OrderedDict(y=roi_pool(inp["x"], inp["rois"], _pair(a["output_size"]), float(a["spatial_scale"])))


def run_roi_align(inp, a):
    return OrderedDict(y=roi_align(inp["x"], inp["rois"], _pair(a["output_size"]), float(a["spatial_scale"]),
                                   int(a["sampling_ratio"]), bool(a["aligned"])))


def context_attention(p, g, batch_index, w_q, w_k, heads):
    """ops.md: y[k] = P + concat_h softmax(P Wq_h^T (V Wk_h^T)^T / sqrt(dk)) V_h, V = g[batch_index[k]]."""
    K, C, Qh, Qw = p.shape
    N, C2, Mh, Mw = g.shape
    D = w_q.shape[0]
    assert C2 == C and w_q.shape == (D, C) and w_k.shape == (D, C)
    assert D % heads == 0 and C % heads == 0
    dk, cv = D // heads, C // heads
    Q, M = Qh * Qw, Mh * Mw
    P = p.reshape(K, C, Q).transpose(1, 2)              # K,Q,C  (row q = i*Qw + j)
    V = g.reshape(N, C, M).transpose(1, 2)              # N,M,C
    keys = V @ w_k.t()                                  # N,M,D  (keys projected once per image)
    qs = (P @ w_q.t()).reshape(K, Q, heads, dk).transpose(1, 2)          # K,H,Q,dk
    ks = keys[batch_index].reshape(K, M, heads, dk).transpose(1, 2)      # K,H,M,dk
    vs = V[batch_index].reshape(K, M, heads, cv).transpose(1, 2)         # K,H,M,cv
    att = torch.softmax(qs @ ks.transpose(-1, -2) / math.sqrt(dk), dim=-1)  # K,H,Q,M
    o = (att @ vs).transpose(1, 2).reshape(K, Q, C)                      # concat heads
    return (P + o).transpose(1, 2).reshape(K, C, Qh, Qw)


def run_context_attention(inp, a):
    return OrderedDict(y=context_attention(inp["p"], inp["g"], inp["batch_index"], inp["w_q"], inp["w_k"],
                                           int(a["heads"])))


def run_nms(inp, a):
    return OrderedDict(keep=nms(inp["boxes"], inp["scores"], float(a["iou_threshold"])))


def run_batched_nms(inp, a):
    return OrderedDict(keep=batched_nms(inp["boxes"], inp["scores"], inp["idxs"], float(a["iou_threshold"])))


def run_group_norm(inp, a):
    return OrderedDict(y=F.group_norm(inp["x"], int(a["groups"]), inp.get("weight"), inp.get("bias"), float(a["eps"])))


OPS = {
    # op: (runner, names of the inputs that receive gradients (None: forward only))
    "group_norm": (run_group_norm, ("x", "weight", "bias")),
    "conv2d": (run_conv2d, ("x", "weight", "bias")),
    "max_pool2d": (run_max_pool2d, ("x",)),
    "roi_pool": (run_roi_pool, ("x",)),
    "roi_align": (run_roi_align, ("x",)),
    "context_attention": (run_context_attention, ("p", "g", "w_q", "w_k")),
    "nms": (run_nms, None),
    "batched_nms": (run_batched_nms, None),
}

# inputs that are coordinates / indices, never differentiated
NO_GRAD_INPUTS = {"rois", "batch_index", "boxes", "scores", "idxs"}


def evaluate(op, inputs, attrs, grad_outputs, dtype):
    """Run op in `dtype` on the float32 `inputs`; returns (outputs, grads) as float tensors of dtype."""
    runner, grad_names = OPS[op]
    t = OrderedDict()
    for k, v in inputs.items():
        if v.dtype == torch.int64:
            t[k] = v.clone()
        else:
            t[k] = v.to(dtype).clone()
            if grad_names is not None and k in grad_names:
                t[k].requires_grad_(True)
    outs = runner(t, attrs)
    grads = OrderedDict()
    if grad_names is not None:
        ys = list(outs.values())
        gos = [grad_outputs[k].to(dtype) for k in outs]
        wrt = [t[k] for k in t if k in grad_names]
        gs = torch.autograd.grad(ys, wrt, gos, allow_unused=True)
        for k, gk in zip([k for k in t if k in grad_names], gs):
            grads[k] = torch.zeros_like(t[k]) if gk is None else gk
    outs = OrderedDict((k, v.detach()) for k, v in outs.items())
    grads = OrderedDict((k, v.detach()) for k, v in grads.items())
    return outs, grads


# ----------------------------------------------------------------------------------
# roi_pool binning (torchvision's CPU/CUDA kernel arithmetic) for the float32/float64
# consistency check
# ----------------------------------------------------------------------------------

def _round_half_away(v):
    r = math.floor(v)
    frac = v - r
    if frac > 0.5 or (frac == 0.5 and v > 0):
        r += 1
    return r


def roi_pool_bins(rois, scale, out_hw, npdt):
    ph_n, pw_n = out_hw
    res = []
    for r in np.asarray(rois, dtype=np.float32):
        s = npdt(scale)
        c = [_round_half_away(float(npdt(r[i]) * s)) for i in (1, 2, 3, 4)]
        rw = max(c[2] - c[0] + 1, 1)
        rh = max(c[3] - c[1] + 1, 1)
        bh = npdt(rh) / npdt(ph_n)
        bw = npdt(rw) / npdt(pw_n)
        hs = [(math.floor(float(npdt(i) * bh)), math.ceil(float(npdt(i + 1) * bh))) for i in range(ph_n)]
        ws = [(math.floor(float(npdt(j) * bw)), math.ceil(float(npdt(j + 1) * bw))) for j in range(pw_n)]
        res.append((c, hs, ws))
    return res


def roi_align_grids(rois, scale, out_hw, sampling_ratio, aligned, npdt):
    """(grid_h, grid_w) of every RoI in torchvision's roi_align arithmetic with T = npdt."""
    ph_n, pw_n = out_hw
    s = npdt(scale)
    off = npdt(0.5) if aligned else npdt(0.0)
    res = []
    for r in np.asarray(rois, dtype=np.float32):
        x1, y1, x2, y2 = (npdt(r[i]) * s - off for i in (1, 2, 3, 4))
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = max(rw, npdt(1.0)), max(rh, npdt(1.0))
        if sampling_ratio > 0:
            res.append((sampling_ratio, sampling_ratio))
        else:
            res.append((math.ceil(rh / npdt(ph_n)), math.ceil(rw / npdt(pw_n))))
    return res


def max_pool_out_size(n, k, s, p, ceil_mode):
    """PyTorch's pooling_output_shape (dilation 1), plus the naive ceil value for the notes."""
    num = n + 2 * p - (k - 1) - 1
    if ceil_mode:
        o = (num + s - 1) // s + 1
        naive = o
        if (o - 1) * s >= n + p:
            o -= 1
        return o, naive
    return num // s + 1, num // s + 1


# ----------------------------------------------------------------------------------
# case builders
# ----------------------------------------------------------------------------------

CASES = []


def case(fn):
    CASES.append(fn)
    return fn


class Case(object):
    # f32: the reference is torchvision in float32 (see the docstring); sensitive: a float32
    # case that must tell float32 from float64 arithmetic; length_case: one of the RoI-length cases.
    f32 = False
    sensitive = False
    length_case = False

    def __init__(self, name, op, attrs, inputs, note):
        self.name, self.op, self.attrs, self.inputs, self.note = name, op, attrs, inputs, note


def rand_rois(g, K, N, img_w, img_h, min_wh=8.0, max_frac=0.9, lo=0.0):
    """K random RoIs [b, x1, y1, x2, y2] inside [lo, img) with sizes in [min_wh, max_frac*img]."""
    b = torch.randint(0, N, (K,), generator=g).to(torch.float32)
    w = min_wh + rand(g, K) * (img_w * max_frac - min_wh)
    h = min_wh + rand(g, K) * (img_h * max_frac - min_wh)
    x1 = lo + rand(g, K) * (img_w - lo - w)
    y1 = lo + rand(g, K) * (img_h - lo - h)
    return torch.stack([b, x1, y1, x1 + w, y1 + h], 1)


def rand_boxes(g, K, size=400.0, min_wh=10.0, max_wh=120.0):
    w = min_wh + rand(g, K) * (max_wh - min_wh)
    h = min_wh + rand(g, K) * (max_wh - min_wh)
    x1 = rand(g, K) * (size - w)
    y1 = rand(g, K) * (size - h)
    return torch.stack([x1, y1, x1 + w, y1 + h], 1)


def cluster_boxes(g, n_clusters, per, size=400.0, jitter=4.0):
    base = rand_boxes(g, n_clusters, size=size, min_wh=30.0, max_wh=150.0)
    boxes = base.repeat_interleave(per, 0)
    boxes = boxes + randn(g, n_clusters * per, 4, scale=jitter)
    x1 = torch.minimum(boxes[:, 0], boxes[:, 2] - 1.0)
    y1 = torch.minimum(boxes[:, 1], boxes[:, 3] - 1.0)
    return torch.stack([x1, y1, boxes[:, 2], boxes[:, 3]], 1).contiguous()


# ---------------------------------- conv2d ----------------------------------------

def conv_case(name, note, x_shape, w_shape, stride=(1, 1), padding=(0, 0), dilation=(1, 1), bias=True, wscale=None):
    def build():
        g = gen_for(name)
        x = randn(g, *x_shape)
        fan_in = w_shape[1] * w_shape[2] * w_shape[3]
        w = randn(g, *w_shape, scale=wscale if wscale is not None else 1.0 / math.sqrt(fan_in))
        inputs = OrderedDict(x=x, weight=w)
        if bias:
            inputs["bias"] = randn(g, w_shape[0])
        attrs = OrderedDict(stride=list(stride), padding=list(padding), dilation=list(dilation))
        return Case(name, "conv2d", attrs, inputs, note), g
    CASES.append(build)


conv_case("conv2d_3x3_pad1", "3x3, stride 1, pad 1 ('same'), bias, batch 2, odd H/W",
          (2, 8, 9, 11), (6, 8, 3, 3), padding=(1, 1))
conv_case("conv2d_1x1", "1x1 conv (pointwise), bias, batch 2",
          (2, 16, 7, 9), (8, 16, 1, 1))
conv_case("conv2d_1x1_stride2", "1x1 conv with stride 2 on odd sizes: every other pixel used, others get zero grad",
          (1, 8, 9, 10), (12, 8, 1, 1), stride=(2, 2))
conv_case("conv2d_3x3_stride2_pad1", "3x3 stride 2 pad 1 (downsampling), odd sizes 11x13",
          (2, 6, 11, 13), (8, 6, 3, 3), stride=(2, 2), padding=(1, 1))
conv_case("conv2d_3x3_dilation2_pad2", "3x3 dilation 2 pad 2 (same size output)",
          (1, 5, 12, 12), (7, 5, 3, 3), padding=(2, 2), dilation=(2, 2))
conv_case("conv2d_3x3_dilation3_pad1", "3x3 dilation 3 pad 1 (effective 7x7, output shrinks)",
          (1, 4, 13, 11), (6, 4, 3, 3), padding=(1, 1), dilation=(3, 3))
conv_case("conv2d_3x1_stride2x1_pad1x0", "asymmetric kernel 3x1, stride (2,1), padding (1,0)",
          (1, 6, 10, 9), (5, 6, 3, 1), stride=(2, 1), padding=(1, 0))
conv_case("conv2d_1x5_stride1x2_pad0x2", "asymmetric kernel 1x5, stride (1,2), padding (0,2)",
          (2, 4, 7, 12), (6, 4, 1, 5), stride=(1, 2), padding=(0, 2))
conv_case("conv2d_5x3_mixed_stride_dilation", "kernel 5x3, stride (2,3), padding (2,0), dilation (2,1): every attr asymmetric",
          (1, 3, 15, 14), (4, 3, 5, 3), stride=(2, 3), padding=(2, 0), dilation=(2, 1))
conv_case("conv2d_3x3_no_bias", "3x3 pad 1 without bias: input.bias and grad_input.bias are absent",
          (2, 5, 8, 7), (4, 5, 3, 3), padding=(1, 1), bias=False)
conv_case("conv2d_odd_sizes", "odd everything: 3 images, 3->5 channels, 7x5 input, 3x3 stride 2 no pad (border rows/cols unused)",
          (3, 3, 7, 5), (5, 3, 3, 3), stride=(2, 2))
conv_case("conv2d_single_pixel_output", "5x5 kernel on a 5x5 input, no padding: 1x1 output",
          (2, 4, 5, 5), (3, 4, 5, 5))
conv_case("conv2d_batch4", "batch 4, 3x3 pad 1, 3->8 channels (RGB-like stem)",
          (4, 3, 8, 8), (8, 3, 3, 3), padding=(1, 1))
conv_case("conv2d_2x2_stride2_grcn", "learned 2x2 stride 2 conv: the G-RCN conv(2,2,2) downsampling variant",
          (2, 16, 10, 14), (16, 16, 2, 2), stride=(2, 2))
conv_case("conv2d_2x2_stride2_odd", "2x2 stride 2 on odd 9x11 input: last row/col dropped (zero grad)",
          (1, 8, 9, 11), (8, 8, 2, 2), stride=(2, 2))
conv_case("conv2d_3x3_64in_32out", "larger channel counts: 64 in, 32 out, 3x3 pad 1 (576-term reductions)",
          (1, 64, 6, 7), (32, 64, 3, 3), padding=(1, 1))
conv_case("conv2d_1x1_64in_32out", "larger channel counts, 1x1: 64 in, 32 out, batch 2",
          (2, 64, 5, 5), (32, 64, 1, 1))
conv_case("conv2d_3x3_pad2", "padding larger than kernel//2: output grows (3x3 pad 2)",
          (1, 3, 5, 6), (4, 3, 3, 3), padding=(2, 2))
conv_case("conv2d_2x2_stride3", "stride larger than kernel: gaps of input pixels with zero grad",
          (1, 4, 10, 11), (3, 4, 2, 2), stride=(3, 3))
conv_case("conv2d_tiny_input_pad1", "2x2 input smaller than the 3x3 kernel, pad 1",
          (1, 2, 2, 2), (3, 2, 3, 3), padding=(1, 1))


# --------------------------------- group_norm -------------------------------------

def gn_case(name, note, x_shape, groups, affine=True, eps=1e-5, offset=0.0, scale=1.0):
    def build():
        g = gen_for(name)
        x = randn(g, *x_shape, scale=scale) + offset
        inputs = OrderedDict(x=x)
        if affine:
            inputs["weight"] = 1.0 + randn(g, x_shape[1], scale=0.5)
            inputs["bias"] = randn(g, x_shape[1])
        attrs = OrderedDict(groups=int(groups), eps=float(eps))
        return Case(name, "group_norm", attrs, inputs, note), g
    CASES.append(build)


gn_case("group_norm_4d", "(2, 8, 5, 6) in 4 groups, affine", (2, 8, 5, 6), 4)
gn_case("group_norm_one_group", "one group: layer norm over (C, H, W)", (3, 6, 4, 4), 1)
gn_case("group_norm_instance", "groups = channels: instance norm", (2, 5, 7, 3), 5)
gn_case("group_norm_no_affine", "no weight and bias", (2, 12, 3, 5), 3, affine=False)
gn_case("group_norm_3d", "a 3-d input (N, C, L)", (4, 6, 9), 2)
gn_case("group_norm_2d", "a 2-d input (N, C): each group has C/G elements", (5, 16), 4)
gn_case("group_norm_offset", "a common offset of 16 standard deviations",
        (2, 4, 6, 6), 2, offset=8.0, scale=0.5)
gn_case("group_norm_eps", "eps 1e-2 comparable to a small variance", (1, 8, 4, 4), 8, eps=1e-2, scale=0.1)
gn_case("group_norm_large", "(2, 64, 8, 8) in 32 groups (the detector's setting)", (2, 64, 8, 8), 32)


# --------------------------------- max_pool2d -------------------------------------

def pool_case(name, note, x_fn, kernel, stride, padding=(0, 0), ceil_mode=False):
    def build():
        g = gen_for(name)
        x = x_fn(g)
        attrs = OrderedDict(kernel=list(kernel), stride=list(stride), padding=list(padding), ceil_mode=bool(ceil_mode))
        H, W = x.shape[2], x.shape[3]
        oh, nh = max_pool_out_size(H, kernel[0], stride[0], padding[0], ceil_mode)
        ow, nw = max_pool_out_size(W, kernel[1], stride[1], padding[1], ceil_mode)
        fh, _ = max_pool_out_size(H, kernel[0], stride[0], padding[0], False)
        fw, _ = max_pool_out_size(W, kernel[1], stride[1], padding[1], False)
        extra = " [input %dx%d -> output %dx%d" % (H, W, oh, ow)
        if ceil_mode:
            extra += "; floor mode would give %dx%d, ceil without the last-window rule %dx%d" % (fh, fw, nh, nw)
        extra += "]"
        return Case(name, "max_pool2d", attrs, OrderedDict(x=x), note + extra), g
    CASES.append(build)


def _randn(*shape):
    return lambda g: randn(g, *shape)


def _quantised(*shape):
    return lambda g: torch.round(randn(g, *shape) * 2.0) / 2.0


def _negative(*shape):
    return lambda g: -(randn(g, *shape).abs() + 1.0)


def _plateaus(*shape):
    def f(g):
        x = torch.zeros(*shape)
        m = rand(g, *shape) < 0.15
        return torch.where(m, torch.round(randn(g, *shape) * 2.0) / 2.0, x)
    return f


pool_case("max_pool2d_2x2_s2", "2x2 stride 2, even sizes", _randn(2, 4, 10, 12), (2, 2), (2, 2))
pool_case("max_pool2d_2x2_s1", "2x2 stride 1 (the paper's overlapping pool): gradient of a shared max accumulates",
          _randn(1, 3, 7, 9), (2, 2), (1, 1))
pool_case("max_pool2d_3x3_s2_p1", "3x3 stride 2 pad 1 (ResNet stem pool), odd sizes", _randn(1, 4, 11, 13), (3, 3), (2, 2), (1, 1))
pool_case("max_pool2d_3x3_s1_p1", "3x3 stride 1 pad 1 (same size)", _randn(1, 3, 8, 9), (3, 3), (1, 1), (1, 1))
pool_case("max_pool2d_2x2_s2_ceil_odd", "ceil_mode adds a partial last window on odd sizes (window hangs over the edge)",
          _randn(1, 3, 7, 9), (2, 2), (2, 2), (0, 0), True)
pool_case("max_pool2d_2x2_s2_p1_ceil_droplast", "ceil_mode where PyTorch drops the last window because it would start "
          "in the right padding ((o-1)*s >= H+pad)", _randn(1, 3, 5, 7), (2, 2), (2, 2), (1, 1), True)
pool_case("max_pool2d_2x2_s3_ceil_droplast", "stride > kernel with ceil_mode: H=6 drops the window starting at 6, "
          "W=7 keeps a window starting at 6 (one valid column); skipped pixels get zero grad",
          _randn(1, 2, 6, 7), (2, 2), (3, 3), (0, 0), True)
pool_case("max_pool2d_3x3_s2_p1_ceil", "3x3 stride 2 pad 1 ceil_mode: extra window covering the last column plus padding",
          _randn(1, 3, 8, 10), (3, 3), (2, 2), (1, 1), True)
pool_case("max_pool2d_3x3_s2_odd", "3x3 stride 2 no pad on odd 9x7 (floor mode)", _randn(1, 5, 9, 7), (3, 3), (2, 2))
pool_case("max_pool2d_ties_quantised_2x2_s1", "inputs round(x*2)/2: many ties inside windows; the gradient goes to the "
          "FIRST max in row-major window order (PyTorch: val > max || isnan)", _quantised(2, 3, 8, 8), (2, 2), (1, 1))
pool_case("max_pool2d_ties_plateaus_3x3_s1_p1", "mostly-zero input (constant plateaus) with pad 1: ties among zeros "
          "and padding, first max wins", _plateaus(1, 3, 7, 8), (3, 3), (1, 1), (1, 1))
pool_case("max_pool2d_ties_quantised_3x3_s2_p1_ceil", "ties + padding + ceil_mode together", _quantised(1, 4, 9, 8),
          (3, 3), (2, 2), (1, 1), True)
pool_case("max_pool2d_negative_pad_edge", "all inputs < -1 with pad 1: padding must act as -inf (a zero pad would win)",
          _negative(1, 3, 7, 8), (3, 3), (2, 2), (1, 1))
pool_case("max_pool2d_negative_pad_edge_ceil", "all inputs < -1, 2x2 s2 pad 1 ceil_mode: edge windows contain one "
          "real pixel, rest padding/outside", _negative(1, 2, 6, 7), (2, 2), (2, 2), (1, 1), True)
pool_case("max_pool2d_nonsquare_2x3_s1x2_p1", "non-square kernel (2,3), stride (1,2), padding (1,1)",
          _randn(1, 3, 7, 10), (2, 3), (1, 2), (1, 1))
pool_case("max_pool2d_nonsquare_3x2_s2x1_p0x1_ceil", "non-square kernel (3,2), stride (2,1), padding (0,1), ceil_mode",
          _randn(2, 2, 8, 6), (3, 2), (2, 1), (0, 1), True)
pool_case("max_pool2d_global_5x6", "kernel = whole map (5x6): 1x1 output, gradient to the single argmax",
          _randn(2, 3, 5, 6), (5, 6), (5, 6))
pool_case("max_pool2d_1x1_s2", "1x1 kernel stride 2: pure subsampling", _randn(1, 3, 7, 8), (1, 1), (2, 2))


# ---------------------------------- roi_pool --------------------------------------

def roi_case(op, name, note, x_shape, rois_fn, output_size, scale, sampling_ratio=2, aligned=False, x_fn=None,
             f32=False, sensitive=False, length_case=False):
    def build():
        g = gen_for(name)
        x = x_fn(g) if x_fn is not None else randn(g, *x_shape)
        rois = rois_fn(g).to(torch.float32).reshape(-1, 5).contiguous()
        attrs = OrderedDict(output_size=list(output_size), spatial_scale=float(scale))
        if op == "roi_align":
            attrs["sampling_ratio"] = int(sampling_ratio)
            attrs["aligned"] = bool(aligned)
        c = Case(name, op, attrs, OrderedDict(x=x, rois=rois), note)
        c.f32, c.sensitive, c.length_case = f32, sensitive, length_case
        return c, g
    CASES.append(build)


def fixed(rows):
    return lambda g: f32(rows)


def with_random(rows, K, N, img_w, img_h, **kw):
    def f(g):
        r = rand_rois(g, K, N, img_w, img_h, **kw)
        return torch.cat([f32(rows).reshape(-1, 5), r], 0) if rows else r
    return f


# feature map 12x16 at stride 16 -> image 192x256
IMG_W16, IMG_H16 = 256.0, 192.0

EDGE_ROIS_16 = [  # partly outside the 192x256 image (map 12x16, scale 1/16)
    [0, -40.0, -30.0, 60.0, 50.0],      # over the top-left corner
    [0, 200.0, 20.0, 300.0, 90.0],      # over the right edge
    [1, 30.0, 150.0, 120.0, 250.0],     # over the bottom edge
    [1, -100.0, 40.0, 20.0, 100.0],     # mostly left of the map
    [0, 180.0, 140.0, 400.0, 330.0],    # over the bottom-right corner
    [1, -20.0, -20.0, 280.0, 210.0],    # bigger than the image on all sides
]
OUTSIDE_ROIS_16 = [  # entirely outside the map
    [0, 300.0, 20.0, 400.0, 100.0],     # right of the map
    [1, 20.0, 200.0, 100.0, 260.0],     # below the map
    [0, -120.0, -90.0, -40.0, -30.0],   # above-left, negative
    [1, 260.0, 200.0, 330.0, 300.0],    # beyond the bottom-right corner
    [0, 40.0, 30.0, 120.0, 110.0],      # one normal RoI so the case is not all zero
]
TINY_ROIS_16 = [  # smaller than one feature cell (16 px)
    [0, 50.0, 60.0, 55.0, 63.0],
    [1, 100.5, 20.25, 104.75, 30.0],
    [0, 0.0, 0.0, 3.0, 3.0],
    [1, 250.0, 185.0, 255.0, 191.0],    # at the far corner
    [0, 70.0, 70.0, 70.5, 86.0],        # thin
]
DEGENERATE_ROIS_16 = [
    [0, 100.0, 50.0, 60.0, 120.0],      # x2 < x1
    [1, 40.0, 150.0, 90.0, 80.0],       # y2 < y1
    [0, 120.0, 100.0, 120.0, 100.0],    # zero size, a point
    [1, 30.0, 40.0, 30.0, 140.0],       # zero width
    [0, 200.0, 170.0, 10.0, 5.0],       # both inverted
]
HALF_ROIS_16 = [  # scaled coordinates exactly k + 0.5 (scale 1/16): std::round, half away from zero
    [0, 8.0, 8.0, 40.0, 72.0],          # 0.5, 0.5, 2.5, 4.5      -> 1, 1, 3, 5 (banker's: 0, 0, 2, 4)
    [1, -8.0, -40.0, 56.0, 24.0],       # -0.5, -2.5, 3.5, 1.5    -> -1, -3, 4, 2 (banker's: 0, -2, 4, 2)
    [0, 72.0, 104.0, 168.0, 184.0],     # 4.5, 6.5, 10.5, 11.5   -> 5, 7, 11, 12
    [1, 136.0, 24.0, 232.0, 120.0],     # 8.5, 1.5, 14.5, 7.5    -> 9, 2, 15, 8
    [0, -24.0, 88.0, 8.0, 152.0],       # -1.5, 5.5, 0.5, 9.5    -> -2, 6, 1, 10
    [1, 232.0, 168.0, 264.0, 200.0],    # 14.5, 10.5, 16.5, 12.5 -> 15, 11, 17, 13 (partly outside)
]
BEYOND_BORDER_ROIS_16 = [  # roi_align: sampling points beyond the -1 / H / W border are dropped (contribute 0)
    [0, -60.0, -50.0, 40.0, 30.0],      # samples at y, x < -1 (in cells) exist
    [1, -33.0, 10.0, 20.0, 100.0],      # from -2.06 cells: some columns of samples dropped
    [0, 230.0, 150.0, 300.0, 240.0],    # past W=16 and H=12
    [1, -100.0, -100.0, -10.0, -5.0],   # entirely in [-6.25, -0.31]: mostly dropped, some clamped to row/col 0
    [0, 247.0, 100.0, 290.0, 160.0],    # starts within the last cell, extends past W
]
HUGE_ROIS_16 = [
    [0, -200.0, -150.0, 500.0, 400.0],  # ~3x the image: adaptive grid ceil(44/7) = 7 samples per bin side
    [1, 0.0, 0.0, 256.0, 192.0],        # exactly the image
    [0, -64.0, 0.0, 320.0, 192.0],
]


def rois_concat(*parts):
    def f(g):
        out = []
        for p in parts:
            out.append(p(g) if callable(p) else f32(p).reshape(-1, 5))
        return torch.cat(out, 0)
    return f


RANDOM6 = lambda g: rand_rois(g, 6, 2, IMG_W16, IMG_H16, min_wh=16.0)

roi_case("roi_pool", "roi_pool_7x7_scale16", "7x7 bins, spatial_scale 1/16, random RoIs inside a 192x256 image (map 12x16)",
         (2, 5, 12, 16), lambda g: rand_rois(g, 8, 2, IMG_W16, IMG_H16, min_wh=16.0), (7, 7), 1.0 / 16)
roi_case("roi_pool", "roi_pool_7x7_scale8", "spatial_scale 1/8: image 128x160, map 16x20",
         (2, 4, 16, 20), lambda g: rand_rois(g, 8, 2, 160.0, 128.0, min_wh=8.0), (7, 7), 1.0 / 8)
roi_case("roi_pool", "roi_pool_7x7_scale4", "spatial_scale 1/4: image 64x88, map 16x22",
         (1, 3, 16, 22), lambda g: rand_rois(g, 6, 1, 88.0, 64.0, min_wh=4.0), (7, 7), 1.0 / 4)
roi_case("roi_pool", "roi_pool_2x3_scale1", "spatial_scale 1 (RoIs in map cells, fractional), output 2x3 (non-square)",
         (2, 3, 10, 12), lambda g: rand_rois(g, 8, 2, 12.0, 10.0, min_wh=1.0, max_frac=1.0), (2, 3), 1.0)
roi_case("roi_pool", "roi_pool_partly_outside", "RoIs crossing each border and larger than the image: bins are clamped "
         "to the map, bins fully outside are empty (output 0, no grad)", (2, 4, 12, 16), fixed(EDGE_ROIS_16), (7, 7), 1.0 / 16)
roi_case("roi_pool", "roi_pool_fully_outside", "RoIs entirely outside the map: every bin empty -> 0 and no gradient "
         "(last RoI is a normal one)", (2, 3, 12, 16), fixed(OUTSIDE_ROIS_16), (7, 7), 1.0 / 16)
roi_case("roi_pool", "roi_pool_tiny", "RoIs smaller than one cell: roi_w = max(x2r - x1r + 1, 1); 7x7 bins repeat "
         "the same few cells (gradients of repeated cells accumulate)", (2, 3, 12, 16), fixed(TINY_ROIS_16), (7, 7), 1.0 / 16)
roi_case("roi_pool", "roi_pool_round_half", "scaled coordinates exactly k+0.5 incl. negatives: torchvision rounds "
         "with std::round (half AWAY from zero: 0.5->1, 2.5->3, -0.5->-1, -2.5->-3), not banker's rounding",
         (2, 3, 12, 16), fixed(HALF_ROIS_16), (7, 7), 1.0 / 16)
roi_case("roi_pool", "roi_pool_degenerate", "x2<x1, y2<y1, zero-size RoIs: malformed RoIs are forced to 1x1 cell at "
         "(round(x1*s), round(y1*s)); all 3x3 bins read that one cell", (2, 3, 12, 16), fixed(DEGENERATE_ROIS_16), (3, 3), 1.0 / 16)
roi_case("roi_pool", "roi_pool_whole_image_14x14", "G-RCN context pooling: the whole-image box [0,0,W,H] of each "
         "image, 14x14 output on a 20x27 map (image 320x432): round(W/16)=27 so the RoI spans 28 cells, the last one "
         "clamped away; plus [0,0,W-1,H-1] and an inset [8,8,423,311] box (1..26 x 1..19)",
         (2, 3, 20, 27), fixed([[0, 0.0, 0.0, 432.0, 320.0], [1, 0.0, 0.0, 432.0, 320.0],
                                [0, 0.0, 0.0, 431.0, 319.0], [1, 8.0, 8.0, 423.0, 311.0]]), (14, 14), 1.0 / 16)
roi_case("roi_pool", "roi_pool_14x14_small_rois", "14x14 output of RoIs smaller than 14 cells: bins narrower than a "
         "cell overlap (floor/ceil), cells repeat", (1, 2, 12, 16),
         fixed([[0, 16.0, 16.0, 100.0, 90.0], [0, 50.0, 10.0, 230.0, 60.0], [0, 100.0, 100.0, 140.0, 180.0]]), (14, 14), 1.0 / 16)
roi_case("roi_pool", "roi_pool_large_covering", "RoIs covering and exceeding the whole map", (2, 3, 12, 16),
         fixed(HUGE_ROIS_16 + [[1, -500.0, -400.0, 800.0, 700.0]]), (7, 7), 1.0 / 16)
roi_case("roi_pool", "roi_pool_1x1", "1x1 output: global max over each RoI", (2, 4, 12, 16), RANDOM6, (1, 1), 1.0 / 16)
roi_case("roi_pool", "roi_pool_many_rois_64", "64 RoIs over 3 images (random image order), 7x7, 2 channels",
         (3, 2, 12, 16), lambda g: rand_rois(g, 64, 3, IMG_W16, IMG_H16, min_wh=8.0), (7, 7), 1.0 / 16)
roi_case("roi_pool", "roi_pool_several_images", "4 images, RoIs listed out of image order (batch index 3,0,2,1,...)",
         (4, 3, 12, 16), fixed([[3, 10.0, 20.0, 150.0, 120.0], [0, 60.0, 40.0, 200.0, 180.0], [2, 0.0, 0.0, 255.0, 191.0],
                                [1, 100.0, 60.0, 180.0, 130.0], [3, 40.0, 100.0, 90.0, 190.0], [0, 5.0, 5.0, 45.0, 70.0]]),
         (7, 7), 1.0 / 16)
roi_case("roi_pool", "roi_pool_ties", "quantised inputs round(x*2)/2: ties inside bins; gradient to the FIRST max in "
         "row-major bin order (strict '>' from -FLT_MAX)", (2, 3, 12, 16), RANDOM6, (7, 7), 1.0 / 16,
         x_fn=_quantised(2, 3, 12, 16))
roi_case("roi_pool", "roi_pool_zero_rois", "K = 0: output (0,C,7,7), grad_input.x all zero", (2, 3, 12, 16),
         lambda g: torch.zeros(0, 5), (7, 7), 1.0 / 16)


# ---------------------------------- roi_align -------------------------------------

roi_case("roi_align", "roi_align_7x7_aligned_sr2", "7x7, scale 1/16, sampling_ratio 2, aligned (half-pixel offset)",
         (2, 5, 12, 16), lambda g: rand_rois(g, 8, 2, IMG_W16, IMG_H16), (7, 7), 1.0 / 16, 2, True)
roi_case("roi_align", "roi_align_7x7_unaligned_sr2", "7x7, scale 1/16, sampling_ratio 2, aligned=False (legacy: no "
         "offset, RoI size clamped to >= 1 cell)", (2, 5, 12, 16), lambda g: rand_rois(g, 8, 2, IMG_W16, IMG_H16),
         (7, 7), 1.0 / 16, 2, False)
roi_case("roi_align", "roi_align_adaptive_aligned", "sampling_ratio 0 (adaptive: ceil(roi_size/output_size) per bin "
         "side, so RoIs of different sizes use different grids)", (2, 4, 12, 16),
         lambda g: rand_rois(g, 8, 2, IMG_W16, IMG_H16, min_wh=4.0, max_frac=1.0), (7, 7), 1.0 / 16, 0, True)
roi_case("roi_align", "roi_align_adaptive_unaligned", "sampling_ratio -1 (adaptive, torchvision's default), "
         "aligned=False", (2, 4, 12, 16), lambda g: rand_rois(g, 8, 2, IMG_W16, IMG_H16, min_wh=4.0, max_frac=1.0),
         (7, 7), 1.0 / 16, -1, False)
roi_case("roi_align", "roi_align_sr1", "sampling_ratio 1: one sample per bin (bin centre)", (2, 4, 12, 16), RANDOM6,
         (7, 7), 1.0 / 16, 1, True)
roi_case("roi_align", "roi_align_sr4", "sampling_ratio 4: 16 samples per bin", (2, 4, 12, 16), RANDOM6,
         (7, 7), 1.0 / 16, 4, False)
roi_case("roi_align", "roi_align_scale8_aligned", "spatial_scale 1/8 (map 16x20, image 128x160), adaptive, aligned",
         (2, 3, 16, 20), lambda g: rand_rois(g, 6, 2, 160.0, 128.0, min_wh=4.0), (7, 7), 1.0 / 8, 0, True)
roi_case("roi_align", "roi_align_scale0.5_3x5", "spatial_scale 0.5 (map 16x18, image 32x36), output 3x5, sr 2, "
         "unaligned", (1, 3, 16, 18), lambda g: rand_rois(g, 6, 1, 36.0, 32.0, min_wh=1.0, max_frac=1.0),
         (3, 5), 0.5, 2, False)
roi_case("roi_align", "roi_align_partly_outside", "RoIs crossing each border (aligned, sr 2): samples in [-1,0) clamp "
         "to row/col 0, samples in (H-1,H] clamp to the last row/col", (2, 4, 12, 16), fixed(EDGE_ROIS_16),
         (7, 7), 1.0 / 16, 2, True)
roi_case("roi_align", "roi_align_beyond_border", "RoIs reaching beyond the -1 border and beyond H/W: samples with "
         "y < -1, y > H, x < -1 or x > W contribute 0 but still count in the average (adaptive, unaligned)",
         (2, 3, 12, 16), fixed(BEYOND_BORDER_ROIS_16), (7, 7), 1.0 / 16, 0, False)
roi_case("roi_align", "roi_align_beyond_border_aligned", "same beyond-border RoIs, aligned, sr 2",
         (2, 3, 12, 16), fixed(BEYOND_BORDER_ROIS_16), (7, 7), 1.0 / 16, 2, True)
roi_case("roi_align", "roi_align_fully_outside", "RoIs entirely outside (every sample beyond the border -> 0) plus "
         "one normal RoI", (2, 3, 12, 16), fixed(OUTSIDE_ROIS_16), (7, 7), 1.0 / 16, 2, True)
roi_case("roi_align", "roi_align_tiny_unaligned", "sub-cell RoIs, aligned=False: size clamped to 1 cell",
         (2, 3, 12, 16), fixed(TINY_ROIS_16), (7, 7), 1.0 / 16, 2, False)
roi_case("roi_align", "roi_align_tiny_aligned_adaptive", "sub-cell RoIs, aligned=True, adaptive: size not clamped, "
         "grid ceil(tiny/7) = 1 sample per bin", (2, 3, 12, 16), fixed(TINY_ROIS_16), (7, 7), 1.0 / 16, 0, True)
roi_case("roi_align", "roi_align_huge_adaptive", "RoIs much larger than the map, adaptive sampling (large grids, "
         "most samples outside)", (2, 3, 12, 16), fixed(HUGE_ROIS_16), (7, 7), 1.0 / 16, 0, False)
roi_case("roi_align", "roi_align_degenerate_aligned_sr2", "x2<x1 / y2<y1 / zero-size RoIs with aligned=True and "
         "sampling_ratio 2: NO clamping, negative bin size, samples walk left/up from (x1,y1)",
         (2, 3, 12, 16), fixed(DEGENERATE_ROIS_16), (3, 3), 1.0 / 16, 2, True)
# torchvision's CPU roi_align aborts ("cannot create std::vector larger than max_size()") when exactly one of the
# two adaptive grid sides is negative (e.g. y2 < y1 by more than out_h cells, x2 > x1); such RoIs are left out.
DEGENERATE_ROIS_ADAPTIVE_16 = [
    [0, 100.0, 50.0, 60.0, 120.0],      # x2 < x1 by 2.5 cells: grid_w = ceil(-0.83) = 0 -> no samples
    [1, 40.0, 150.0, 90.0, 130.0],      # y2 < y1 by 1.25 cells: grid_h = 0
    [0, 120.0, 100.0, 120.0, 100.0],    # a point: grid 0 x 0
    [1, 30.0, 40.0, 30.0, 140.0],       # zero width
    [0, 200.0, 170.0, 10.0, 5.0],       # both inverted: grid (-3) x (-3), count 9, loops empty -> 0
    [1, 40.0, 60.0, 120.0, 100.0],      # one normal RoI
]
roi_case("roi_align", "roi_align_degenerate_aligned_adaptive", "degenerate RoIs, aligned=True, adaptive: "
         "grid = ceil(size/out) <= 0 for inverted/zero-size RoIs -> no samples, output 0 (count = max(gh*gw, 1)); "
         "last RoI normal", (2, 3, 12, 16), fixed(DEGENERATE_ROIS_ADAPTIVE_16), (3, 3), 1.0 / 16, 0, True)
roi_case("roi_align", "roi_align_degenerate_unaligned", "degenerate RoIs, aligned=False: size clamped to 1 cell "
         "starting at (x1,y1)", (2, 3, 12, 16), fixed(DEGENERATE_ROIS_16), (3, 3), 1.0 / 16, 2, False)
roi_case("roi_align", "roi_align_whole_image_14x14", "G-RCN context: whole-image boxes pooled to 14x14 on a 20x27 "
         "map, adaptive, unaligned", (2, 3, 20, 27),
         fixed([[0, 0.0, 0.0, 432.0, 320.0], [1, 0.0, 0.0, 432.0, 320.0]]), (14, 14), 1.0 / 16, 0, False)
roi_case("roi_align", "roi_align_whole_image_14x14_aligned", "whole-image boxes to 14x14, aligned, sr 2",
         (2, 3, 20, 27), fixed([[0, 0.0, 0.0, 432.0, 320.0], [1, 0.0, 0.0, 432.0, 320.0]]), (14, 14), 1.0 / 16, 2, True)
roi_case("roi_align", "roi_align_1x1", "1x1 output (average of the RoI's sample grid), adaptive", (2, 4, 12, 16),
         RANDOM6, (1, 1), 1.0 / 16, 0, True)
roi_case("roi_align", "roi_align_3x5", "3x5 output (non-square), sr 2, aligned", (2, 4, 12, 16), RANDOM6,
         (3, 5), 1.0 / 16, 2, True)
roi_case("roi_align", "roi_align_many_rois_64", "64 RoIs over 3 images, 7x7, 2 channels, sr 2, aligned",
         (3, 2, 12, 16), lambda g: rand_rois(g, 64, 3, IMG_W16, IMG_H16), (7, 7), 1.0 / 16, 2, True)
roi_case("roi_align", "roi_align_zero_rois", "K = 0: output (0,C,7,7), grad_input.x all zero", (2, 3, 12, 16),
         lambda g: torch.zeros(0, 5), (7, 7), 1.0 / 16, 2, True)


# ----------------------- float32-reference RoI cases ------------------------------
# Reference: torchvision's float32 kernels (see the docstring). Spatial scale 1/16; a RoI
# "L cells long" covers cells c0 .. c0 + L - 1 after rounding: its image coordinates are
# 16 * (c0 + frac) and 16 * (c0 + L - 1 + frac) with |frac| < 0.5 (exact in float32).

def cells(c0, length, frac=0.0):
    return 16.0 * (c0 + frac), 16.0 * (c0 + length - 1 + frac)


def span_roi(b, x_cells, y_cells):
    """[b, x1, y1, x2, y2] from (c0, length, frac) per axis."""
    x1, x2 = cells(*x_cells)
    y1, y2 = cells(*y_cells)
    return [b, x1, y1, x2, y2]


# 7 bins: 29 / 57 / 58 / 114 cells along x, along y, and both (2 images, map 64 x 120)
LENGTH_ROIS_7 = [
    span_roi(0, (2, 29, 0.25), (3, 7, 0.0)),
    span_roi(1, (10, 57, -0.3125), (5, 29, 0.125)),
    span_roi(0, (40, 58, 0.0), (4, 57, -0.25)),
    span_roi(1, (1, 114, 0.1875), (3, 58, 0.0)),
    span_roi(0, (0, 7, 0.0), (30, 29, 0.375)),
    span_roi(1, (3, 114, -0.125), (50, 10, 0.0)),
    span_roi(0, (60, 58, 0.0625), (6, 58, 0.3125)),
]
# 14 bins: 62 / 122 cells (1 image, map 128 x 128)
LENGTH_ROIS_14 = [
    span_roi(0, (2, 62, 0.25), (3, 14, 0.0)),
    span_roi(0, (3, 122, -0.1875), (10, 20, 0.125)),
    span_roi(0, (20, 30, 0.0), (1, 122, 0.3125)),
    span_roi(0, (40, 62, -0.375), (50, 62, 0.0)),
    span_roi(0, (4, 122, 0.0), (2, 122, -0.25)),
]
# roi_align, adaptive: RoI sizes (in cells) that are 14 / 21 in float32 but 14.0000004 / 21.0000006
# in float64, so the grid is ceil(size / 7) = 2 / 3 in float and 3 / 4 in double
GRID_FLIP_ROIS_16 = [
    [0, 0.8, 1.6, 224.8, 225.6],        # 14 x 14 cells
    [1, 1.6, 3.2, 337.6, 339.2],        # 21 x 21 cells
    [0, 1.6, 0.8, 225.6, 336.8],        # 14 wide, 21 high
    [1, 3.2, 8.0, 339.2, 120.0],        # 21 wide, 7 high (no flip along y)
    [0, 40.0, 30.0, 140.0, 200.0],      # an ordinary RoI
]

roi_case("roi_pool", "roi_pool_f32_lengths_7x7", "float32 reference: RoIs 29, 57, 58 and 114 cells long (x, y and "
         "both), 7x7 bins: the last bin ends where float arithmetic puts it (29: ceil(7*(29f/7f)) = 29, double 30; "
         "57: float 58, double 57)", (2, 1, 64, 120), fixed(LENGTH_ROIS_7), (7, 7), 1.0 / 16,
         f32=True, sensitive=True, length_case=True)
roi_case("roi_pool", "roi_pool_f32_lengths_14x14", "float32 reference: RoIs 62 and 122 cells long, 14x14 bins: bin 7 "
         "starts one cell off from double arithmetic (62: float 30, double 31; 122: float 61, double 60)",
         (1, 2, 128, 128), fixed(LENGTH_ROIS_14), (14, 14), 1.0 / 16, f32=True, sensitive=True, length_case=True)
roi_case("roi_pool", "roi_pool_f32_random", "float32 reference: 24 random RoIs (4 to 48 cells) on a 2x2x32x48 map, "
         "7x7 bins", (2, 2, 32, 48), lambda g: rand_rois(g, 24, 2, 768.0, 512.0, min_wh=64.0, max_frac=1.0),
         (7, 7), 1.0 / 16, f32=True)

roi_case("roi_align", "roi_align_f32_lengths_7x7_aligned_sr2", "float32 reference: the 29/57/58/114-cell RoIs, "
         "7x7, aligned, sampling_ratio 2", (2, 1, 64, 120), fixed(LENGTH_ROIS_7), (7, 7), 1.0 / 16, 2, True,
         f32=True, length_case=True)
roi_case("roi_align", "roi_align_f32_lengths_7x7_unaligned_adaptive", "float32 reference: the 29/57/58/114-cell "
         "RoIs, 7x7, unaligned, adaptive sampling", (2, 1, 64, 120), fixed(LENGTH_ROIS_7), (7, 7), 1.0 / 16, 0, False,
         f32=True, length_case=True)
roi_case("roi_align", "roi_align_f32_lengths_14x14_aligned_adaptive", "float32 reference: the 62/122-cell RoIs, "
         "14x14, aligned, adaptive sampling", (1, 2, 128, 128), fixed(LENGTH_ROIS_14), (14, 14), 1.0 / 16, 0, True,
         f32=True, length_case=True)
roi_case("roi_align", "roi_align_f32_lengths_14x14_unaligned_sr2", "float32 reference: the 62/122-cell RoIs, "
         "14x14, unaligned, sampling_ratio 2", (1, 2, 128, 128), fixed(LENGTH_ROIS_14), (14, 14), 1.0 / 16, 2, False,
         f32=True, length_case=True)
roi_case("roi_align", "roi_align_f32_random_aligned_adaptive", "float32 reference: 16 random RoIs, 7x7, aligned, "
         "adaptive sampling", (2, 2, 32, 48), lambda g: rand_rois(g, 16, 2, 768.0, 512.0, min_wh=16.0, max_frac=1.0),
         (7, 7), 1.0 / 16, 0, True, f32=True)
roi_case("roi_align", "roi_align_f32_random_unaligned_sr2", "float32 reference: 16 random RoIs, 7x7, unaligned, "
         "sampling_ratio 2", (2, 2, 32, 48), lambda g: rand_rois(g, 16, 2, 768.0, 512.0, min_wh=16.0, max_frac=1.0),
         (7, 7), 1.0 / 16, 2, False, f32=True)
roi_case("roi_align", "roi_align_f32_grid_flip_unaligned_adaptive", "float32 reference: RoIs 14 or 21 cells in float "
         "(14.0000004 / 21.0000006 in double): the adaptive grid is ceil(size/7) = 2 / 3 in float, 3 / 4 in double; "
         "unaligned", (2, 3, 24, 30), fixed(GRID_FLIP_ROIS_16), (7, 7), 1.0 / 16, 0, False, f32=True, sensitive=True)
roi_case("roi_align", "roi_align_f32_grid_flip_aligned_adaptive", "float32 reference: the same grid-flip RoIs, "
         "aligned (the -0.5 offset in float)", (2, 3, 24, 30), fixed(GRID_FLIP_ROIS_16), (7, 7), 1.0 / 16, 0, True,
         f32=True, sensitive=True)


# ------------------------------ context_attention ---------------------------------

def ctx_case(name, note, K, N, C, D, heads, q_hw, m_hw, batch_index=None, wscale=1.0):
    def build():
        g = gen_for(name)
        p = randn(g, K, C, q_hw[0], q_hw[1])
        gm = randn(g, N, C, m_hw[0], m_hw[1])
        if batch_index is None:
            bi = torch.randint(0, N, (K,), generator=g)
        else:
            bi = torch.tensor(batch_index, dtype=torch.int64).reshape(K)
        w_q = randn(g, D, C, scale=wscale / math.sqrt(C))
        w_k = randn(g, D, C, scale=wscale / math.sqrt(C))
        inputs = OrderedDict(p=p, g=gm, batch_index=bi.to(torch.int64), w_q=w_q, w_k=w_k)
        return Case(name, "context_attention", OrderedDict(heads=int(heads)), inputs, note), g
    CASES.append(build)


ctx_case("context_attention_h1", "1 head, D = C = 8, Q 7x7, M 14x14", 3, 2, 8, 8, 1, (7, 7), (14, 14), [0, 1, 1])
ctx_case("context_attention_h2_d12_c8", "2 heads, D=12 != C=8 (dk=6, cv=4)", 4, 2, 8, 12, 2, (7, 7), (14, 14), [1, 0, 0, 1])
ctx_case("context_attention_h4_d8_c16", "4 heads, D=8 < C=16 (dk=2, cv=4)", 3, 2, 16, 8, 4, (7, 7), (14, 14), [0, 0, 1])
ctx_case("context_attention_h8_d32_c16", "8 heads, D=32, C=16 (dk=4, cv=2)", 3, 2, 16, 32, 8, (7, 7), (14, 14), [1, 1, 0])
ctx_case("context_attention_image_without_rois", "3 images, image 1 has no RoI: grad_input.g[1] is exactly 0",
         4, 3, 8, 8, 2, (7, 7), (14, 14), [2, 0, 2, 0])
ctx_case("context_attention_odd_shapes", "Q 3x5, M 5x3 (non-square, row-major flattening q = i*Qw + j)",
         3, 2, 8, 12, 2, (3, 5), (5, 3), [0, 1, 0])
ctx_case("context_attention_q1x1", "Q 1x1 (one query per RoI), M 14x14", 5, 2, 8, 8, 2, (1, 1), (14, 14))
ctx_case("context_attention_m1x1", "M 1x1: softmax over one key is 1, y = P + V (no gradient reaches w_q, w_k)",
         3, 2, 8, 8, 2, (7, 7), (1, 1), [0, 1, 0])
ctx_case("context_attention_one_roi", "a single RoI (K=1), 2 images", 1, 2, 8, 8, 2, (7, 7), (14, 14), [1])
ctx_case("context_attention_large_logits", "projection weights x6: |logits| up to ~400, nearly one-hot "
         "attention; a softmax without max-subtraction overflows float32 exp (> 88)", 3, 2, 8, 8, 2, (7, 7), (14, 14), [0, 1, 0], wscale=6.0)
ctx_case("context_attention_zero_rois", "K = 0: empty output, grad_input.g/w_q/w_k all zero",
         0, 2, 8, 8, 2, (7, 7), (14, 14), [])


# ------------------------------------- nms ----------------------------------------

def nms_case(name, note, fn, thr, op="nms"):
    def build():
        g = gen_for(name)
        parts = fn(g)
        inputs = OrderedDict(boxes=parts[0].to(torch.float32).reshape(-1, 4).contiguous(),
                             scores=parts[1].to(torch.float32).reshape(-1).contiguous())
        if op == "batched_nms":
            inputs["idxs"] = parts[2].to(torch.int64).reshape(-1).contiguous()
        return Case(name, op, OrderedDict(iou_threshold=float(thr)), inputs, note), g
    CASES.append(build)


def unique_scores(g, n):
    """n distinct float32 scores in (0,1) (no ties unless a case asks for them)."""
    s = (torch.randperm(1 << 20, generator=g)[:n].to(torch.float64) + 0.5) / float(1 << 20)
    return s.to(torch.float32)


def _random_nms(n, size=400.0):
    return lambda g: (rand_boxes(g, n, size), unique_scores(g, n))


def _clusters(g):
    b = cluster_boxes(g, 10, 30)
    return b, unique_scores(g, b.shape[0])


def _duplicates(g):
    base = rand_boxes(g, 6)
    boxes = torch.cat([base, base, base[:3], base[:3]], 0)          # exact duplicates (IoU 1)
    s = unique_scores(g, boxes.shape[0])
    s[12:15] = s[0:3]                                               # some duplicates with equal scores too
    return boxes, s


def _ties(g):
    # chains of equal-score boxes: A~B, B~C overlap (IoU 0.6), A,C don't -> keep A and C, not B;
    # which one is "A" is decided by the index order among the tie (stable: lower index first)
    rows, scores = [], []
    for c in range(8):
        x0 = 60.0 * c
        chain = [[x0, 0.0, x0 + 10.0, 10.0], [x0 + 2.5, 0.0, x0 + 12.5, 10.0], [x0 + 5.0, 0.0, x0 + 15.0, 10.0]]
        order = [[0, 1, 2], [2, 1, 0], [1, 0, 2], [1, 2, 0]][c % 4]
        for i in order:
            rows.append(chain[i])
            scores.append(0.5 if c % 2 == 0 else 0.25)
    b = torch.tensor(rows) + torch.tensor([0.0, 30.0, 0.0, 30.0])
    extra = rand_boxes(g, 40)
    es = torch.round(rand(g, 40) * 4.0) / 4.0                       # quantised scores: more ties
    return torch.cat([b, extra], 0), torch.cat([torch.tensor(scores), es], 0)


def _zero_area(g):
    rows = [[50.0, 50.0, 50.0, 90.0], [50.0, 50.0, 50.0, 90.0],    # identical zero-width boxes: IoU 0/0 = NaN -> kept
            [10.0, 20.0, 60.0, 20.0],                               # zero height
            [30.0, 30.0, 30.0, 30.0], [30.0, 30.0, 30.0, 30.0],     # points
            [40.0, 40.0, 80.0, 100.0],                              # normal box containing the zero-width one
            [41.0, 41.0, 81.0, 101.0]]                              # overlaps the normal one (suppressed)
    b = torch.cat([torch.tensor(rows), rand_boxes(g, 20)], 0)
    return b, unique_scores(g, b.shape[0])


def _iou_equal_half(g):
    # IoU exactly 0.5 (exact in float32 and float64): NOT suppressed (strictly greater); slightly above: suppressed
    rows = [[0.0, 0.0, 2.0, 1.0], [0.0, 0.0, 1.0, 1.0],              # IoU = 1/2 exactly -> both kept
            [10.0, 0.0, 14.0, 4.0], [10.0, 0.0, 14.0, 2.0],          # IoU = 8/16 = 0.5 -> kept
            [20.0, 0.0, 23.0, 1.0], [21.0, 0.0, 24.0, 1.0],          # IoU = 2/4 = 0.5 -> kept
            [30.0, 0.0, 32.0, 1.0], [30.0, 0.0, 1.0 + 30.0 + 1e-3, 1.0]]  # IoU slightly > 0.5 -> suppressed
    b = torch.tensor(rows)
    s = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    return b, s


def _nested(g):
    rows = [[0.0, 0.0, 100.0, 100.0], [10.0, 10.0, 90.0, 90.0], [20.0, 20.0, 80.0, 80.0],
            [30.0, 30.0, 70.0, 70.0], [0.0, 0.0, 100.0, 50.0], [200.0, 0.0, 210.0, 10.0], [210.0, 0.0, 220.0, 10.0]]
    b = torch.tensor(rows)
    s = torch.tensor([0.3, 0.9, 0.5, 0.7, 0.6, 0.8, 0.4])
    return b, s


def _large_coords(g):
    b = rand_boxes(g, 150, size=6000.0, min_wh=200.0, max_wh=1500.0) + 20000.0
    return b, unique_scores(g, 150)


nms_case("nms_random_200_t0.5", "200 random boxes, threshold 0.5", _random_nms(200), 0.5)
nms_case("nms_random_200_t0.3", "200 random boxes, threshold 0.3", _random_nms(200), 0.3)
nms_case("nms_random_200_t0.7", "200 random boxes, threshold 0.7", _random_nms(200), 0.7)
nms_case("nms_clusters_t0.5", "10 heavy-overlap clusters of 30 jittered boxes: about one box per cluster survives",
         _clusters, 0.5)
nms_case("nms_clusters_t0.7", "the same kind of clusters at threshold 0.7", _clusters, 0.7)
nms_case("nms_duplicates", "exact duplicate boxes (IoU 1), some also with equal scores: lower index wins a tie",
         _duplicates, 0.5)
nms_case("nms_score_ties", "equal scores: torchvision sorts with a STABLE descending sort, so among equal scores the "
         "lower index comes first (both in keep order and in who suppresses whom); chains A~B~C keep A and C",
         _ties, 0.5)
nms_case("nms_zero_area", "zero-width/height boxes and points: two identical zero-area boxes have IoU 0/0 = NaN, "
         "NaN > thr is false, both kept", _zero_area, 0.5)
nms_case("nms_iou_equal_threshold", "IoU exactly 0.5 = threshold: kept (strictly greater suppresses); one pair just "
         "above 0.5 is suppressed", _iou_equal_half, 0.5)
nms_case("nms_nested_t0.3", "nested boxes and touching boxes (IoU 0) at threshold 0.3", _nested, 0.3)
nms_case("nms_threshold_0", "threshold 0: any positive overlap suppresses, touching boxes (IoU 0) survive", _nested, 0.0)
nms_case("nms_threshold_1", "threshold 1: nothing is suppressed, not even exact duplicates (IoU 1 is not > 1)",
         _duplicates, 1.0)
nms_case("nms_2000", "2000 random boxes (large case), threshold 0.5", _random_nms(2000, size=1000.0), 0.5)
nms_case("nms_single_box", "a single box", lambda g: (torch.tensor([[3.0, 4.0, 50.0, 60.0]]), torch.tensor([0.7])), 0.5)
nms_case("nms_large_coords", "boxes with coordinates around 20000-26000 (float32 areas ~1e6)", _large_coords, 0.5)
nms_case("nms_empty", "zero boxes: keep is empty (shape [0])", lambda g: (torch.zeros(0, 4), torch.zeros(0)), 0.5)


# ---------------------------------- batched_nms ------------------------------------

def _batched_random(n, classes, size=400.0):
    def f(g):
        b = rand_boxes(g, n, size)
        return b, unique_scores(g, n), torch.randint(0, classes, (n,), generator=g)
    return f


def _batched_clusters(n_clusters, per, classes, spread=None, size=400.0):
    """Clusters of overlapping boxes; with `spread`, the boxes of a cluster take one of `spread` classes
    around a random class of the cluster (so same-class overlaps exist even with many classes)."""
    def f(g):
        b = cluster_boxes(g, n_clusters, per, size=size)
        n = b.shape[0]
        if spread is None:
            idxs = torch.randint(0, classes, (n,), generator=g)
        else:
            base = torch.randint(0, classes, (n_clusters,), generator=g).repeat_interleave(per)
            idxs = (base + torch.randint(0, spread, (n,), generator=g)) % classes
        return b, unique_scores(g, n), idxs
    return f


def _cross_class(g):
    base = rand_boxes(g, 10, min_wh=40.0)
    boxes = base.repeat(8, 1)                                        # the same 10 boxes, 2 copies in each of 4 classes
    boxes = boxes + randn(g, 80, 4, scale=1.0)                       # (jitter 1 px: IoU of copies ~0.9)
    idxs = torch.arange(4).repeat_interleave(20)
    return boxes, unique_scores(g, 80), idxs


def _batched_ties(g):
    b, s = _ties(g)
    n = b.shape[0]
    idxs = torch.randint(0, 3, (n,), generator=g)
    idxs[:24] = torch.tensor([0, 0, 0, 1, 1, 1] * 4)                 # keep the chains inside one class each
    return b, s, idxs


def _sparse_ids(g):
    n = 240
    b = cluster_boxes(g, 12, 20)
    ids = torch.tensor([3, 17, 79])[torch.randint(0, 3, (n,), generator=g)]
    return b, unique_scores(g, n), ids


nms_case("batched_nms_300_5cls", "300 random boxes, 5 classes, threshold 0.5", _batched_random(300, 5), 0.5,
         "batched_nms")
nms_case("batched_nms_20cls", "clusters with 20 classes, threshold 0.5", _batched_clusters(15, 20, 20), 0.5,
         "batched_nms")
nms_case("batched_nms_80cls", "clusters with 80 classes (COCO-like), threshold 0.6", _batched_clusters(20, 30, 80, 4), 0.6,
         "batched_nms")
nms_case("batched_nms_one_class", "all boxes in one class: equals plain nms", _batched_clusters(10, 20, 1), 0.5,
         "batched_nms")
nms_case("batched_nms_cross_class_overlap", "the same 10 boxes (jittered by 1 px) twice in each of 4 classes: the "
         "twin in the same class is suppressed, the copies in other classes never are", _cross_class, 0.5, "batched_nms")
nms_case("batched_nms_score_ties", "equal scores across and within classes (<= 1000 boxes: torchvision's "
         "coordinate-offset path, one stable-sorted nms: ties in ascending index order)", _batched_ties, 0.5,
         "batched_nms")
nms_case("batched_nms_sparse_class_ids", "class ids 3, 17, 79 only (non-contiguous)", _sparse_ids, 0.5,
         "batched_nms")
nms_case("batched_nms_1000_offset_path", "exactly 1000 boxes (boxes.numel() = 4000, not > 4000): torchvision's "
         "coordinate-offset path", _batched_clusters(50, 20, 10), 0.5, "batched_nms")
nms_case("batched_nms_1001_per_class_path", "1001 boxes (numel 4004 > 4000): torchvision's per-class (vanilla) CPU "
         "path; distinct scores, since that path's final sort is not stable",
         lambda g: (lambda b: (b, unique_scores(g, 1001), torch.randint(0, 10, (1001,), generator=g)))(
             torch.cat([cluster_boxes(g, 50, 20), rand_boxes(g, 1)], 0)), 0.5, "batched_nms")
nms_case("batched_nms_1500_80cls_per_class_path", "1500 boxes in 60 overlap clusters, 80 classes (4 per cluster), "
         "per-class path, threshold 0.5", _batched_clusters(60, 25, 80, 4, size=800.0), 0.5, "batched_nms")
nms_case("batched_nms_empty", "zero boxes: keep is empty",
         lambda g: (torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64)), 0.5, "batched_nms")


# ----------------------------------------------------------------------------------
# generation
# ----------------------------------------------------------------------------------

def to_np(t):
    t = t.detach()
    if t.dtype == torch.int64:
        return t.numpy().astype("<i8")
    return t.to(torch.float32).numpy().astype("<f4")


def build_fixture(c, g):
    """Returns (bytes, tensors list, metadata, self-check info)."""
    op, attrs, inputs = c.op, c.attrs, c.inputs
    runner, grad_names = OPS[op]
    checks = {}

    if grad_names is None:
        outs64, _ = evaluate(op, inputs, attrs, None, torch.float64)
        outs32, _ = evaluate(op, inputs, attrs, None, torch.float32)
        keep = outs64["keep"]
        if not torch.equal(keep, outs32["keep"]):
            raise AssertionError("%s: float32 and float64 keep differ" % c.name)
        if op == "batched_nms":
            for dt in (torch.float64, torch.float32):
                b = inputs["boxes"].to(dt)
                s = inputs["scores"].to(dt)
                thr = float(attrs["iou_threshold"])
                if b.shape[0]:
                    # both torchvision paths must keep the same boxes; the order may only differ among
                    # equal scores (the per-class path's final sort is not stable).  What is stored is what
                    # batched_nms itself returns (its path is chosen by boxes.numel() > 4000 on CPU).
                    k1 = tv_boxes._batched_nms_vanilla(b, s, inputs["idxs"], thr)
                    k2 = tv_boxes._batched_nms_coordinate_trick(b, s, inputs["idxs"], thr)
                    for k in (k1, k2):
                        if not (torch.equal(k.sort()[0], keep.sort()[0]) and torch.equal(s[k], s[keep])):
                            raise AssertionError("%s: batched_nms paths disagree (%s)" % (c.name, dt))
                    if not torch.equal(k1, k2):
                        checks["paths_tie_order_differs"] = True
                    ref_path = k1 if inputs["boxes"].numel() > 4000 else k2
                    if not torch.equal(ref_path, keep):
                        raise AssertionError("%s: unexpected batched_nms dispatch" % c.name)
            checks["path"] = "per-class" if inputs["boxes"].numel() > 4000 else "offset"
        tensors = [("input." + k, to_np(v)) for k, v in inputs.items()]
        tensors.append(("output.keep", to_np(keep)))
        tolerance = OrderedDict()
        checks["kept"] = "%d/%d" % (keep.numel(), inputs["boxes"].shape[0])
    else:
        # grad_output drawn in float32 from the case generator, after the inputs
        with torch.no_grad():
            probe = OPS[op][0](OrderedDict((k, v.to(torch.float64) if v.dtype != torch.int64 else v)
                                           for k, v in inputs.items()), attrs)
        grad_outputs = OrderedDict((k, randn(g, *v.shape)) for k, v in probe.items())
        outs64, grads64 = evaluate(op, inputs, attrs, grad_outputs, torch.float64)
        outs32, grads32 = evaluate(op, inputs, attrs, grad_outputs, torch.float32)
        ref_outs, ref_grads = (outs32, grads32) if c.f32 else (outs64, grads64)
        tensors = [("input." + k, to_np(v)) for k, v in inputs.items()]
        tensors += [("output." + k, to_np(v)) for k, v in ref_outs.items()]
        tensors += [("grad_output." + k, to_np(v)) for k, v in grad_outputs.items()]
        tensors += [("grad_input." + k, to_np(v)) for k, v in ref_grads.items()]
        tolerance = OrderedDict()
        for name, arr in tensors:
            if name.startswith("output.") or name.startswith("grad_input."):
                # a float32 roi_pool output is a selection of input cells: exact
                tolerance[name] = [0.0, 0.0] if (c.f32 and op == "roi_pool" and name == "output.y") else tolerance_of(arr)
    if grad_names is not None and c.f32:
        # float32 reference: no float64 self-check (these cases sit on float32/float64
        # discontinuities on purpose); a sensitive case must tell the two apart instead.
        got64 = OrderedDict([("output." + k, v) for k, v in outs64.items()] +
                            [("grad_input." + k, v) for k, v in grads64.items()])
        worst64 = max(worst_ratio(to_np(got64[name]), arr, tolerance[name]) for name, arr in tensors if name in tolerance)
        checks["f64_ratio"] = worst64
        if op == "roi_pool":
            b32 = roi_pool_bins(inputs["rois"], attrs["spatial_scale"], attrs["output_size"], np.float32)
            b64 = roi_pool_bins(inputs["rois"], attrs["spatial_scale"], attrs["output_size"], np.float64)
            moved = sum(1 for a, b in zip(b32, b64) if a != b)
        else:
            args = (inputs["rois"], attrs["spatial_scale"], attrs["output_size"], attrs["sampling_ratio"], attrs["aligned"])
            moved = sum(1 for a, b in zip(roi_align_grids(*args, np.float32), roi_align_grids(*args, np.float64)) if a != b)
        checks["rois_f32_ne_f64"] = moved
        if c.sensitive:
            if moved == 0:
                raise AssertionError("%s: no RoI has other bins/grids in float64 than in float32" % c.name)
            if not worst64 > 1.0:
                raise AssertionError("%s: torchvision's float64 result passes the float32 fixture (ratio %.3g): "
                                     "it would not catch double arithmetic" % (c.name, worst64))
    elif grad_names is not None:
        # self-check: torch's own float32 kernels must pass with margin
        worst = 0.0
        got32 = OrderedDict([("output." + k, v) for k, v in outs32.items()] +
                            [("grad_input." + k, v) for k, v in grads32.items()])
        for name, arr in tensors:
            if name in tolerance:
                r = worst_ratio(to_np(got32[name]), arr, tolerance[name])
                worst = max(worst, r)
        if worst > SELF_CHECK_MAX_RATIO:
            raise AssertionError("%s: torch float32 fails the tolerance (ratio %.3g)" % (c.name, worst))
        checks["f32_ratio"] = worst
        if op in ("roi_pool", "max_pool2d"):
            # forward is a pure selection: float32 and float64 must agree bit for bit
            if not np.array_equal(to_np(outs32["y"]), to_np(outs64["y"])):
                raise AssertionError("%s: float32/float64 forward selections differ" % c.name)
        if op == "roi_pool":
            b32 = roi_pool_bins(inputs["rois"], attrs["spatial_scale"], attrs["output_size"], np.float32)
            b64 = roi_pool_bins(inputs["rois"], attrs["spatial_scale"], attrs["output_size"], np.float64)
            if b32 != b64:
                raise AssertionError("%s: float32/float64 roi_pool bin edges differ" % c.name)
        if op == "max_pool2d":
            checks["shape"] = "x%s->y%s" % (list(inputs["x"].shape[2:]), list(outs64["y"].shape[2:]))

    meta = OrderedDict([
        ("format", FORMAT),
        ("op", op),
        ("attrs", json.dumps(attrs)),
        ("tolerance", json.dumps(tolerance)),
        ("reference", reference_f32(op) if c.f32 else REFERENCE),
        ("note", c.note),
    ])
    return encode_safetensors(tensors, meta), tensors, meta, checks


def verify_file(path, tensors, meta):
    """Round trip: re-read with our reader, compare to what was meant to be written."""
    with open(path, "rb") as f:
        blob = f.read()
    rmeta, rt = decode_safetensors(blob)
    assert dict(rmeta) == dict(meta), path
    assert list(rt.keys()) == [n for n, _ in tensors], path
    for n, arr in tensors:
        r = rt[n]
        assert r.dtype == arr.dtype and r.shape == arr.shape, (path, n)
        assert r.tobytes() == arr.tobytes(), (path, n)
        # and through torch
        assert torch.equal(torch.from_numpy(r.copy()), torch.from_numpy(np.array(arr))), (path, n)
    (n,) = struct.unpack("<Q", blob[:8])
    assert n % 8 == 0
    json.loads(rmeta["attrs"])
    json.loads(rmeta["tolerance"])


def check_samples(folder):
    """Recompute the sample fixtures from their own inputs/grad_outputs and re-encode them."""
    ok = True
    for fn in sorted(os.listdir(folder)):
        if not fn.endswith(".safetensors"):
            continue
        with open(os.path.join(folder, fn), "rb") as f:
            blob = f.read()
        meta, ts = decode_safetensors(blob)
        tensors = list(ts.items())
        same_bytes = encode_safetensors(tensors, meta) == blob
        op = meta["op"]
        attrs = json.loads(meta["attrs"])
        tol = json.loads(meta["tolerance"])
        inputs = OrderedDict((k[6:], torch.from_numpy(v.copy())) for k, v in ts.items() if k.startswith("input."))
        gos = OrderedDict((k[12:], torch.from_numpy(v.copy())) for k, v in ts.items() if k.startswith("grad_output."))
        outs, grads = evaluate(op, inputs, attrs, gos if gos else None, torch.float64)
        worst = 0.0
        bad = []
        for k, v in list(outs.items()) + [("__g" + k, v) for k, v in grads.items()]:
            name = ("grad_input." + k[3:]) if k.startswith("__g") else ("output." + k)
            want = ts[name]
            got = to_np(v)
            if want.dtype == np.int64:
                if not np.array_equal(got, want):
                    bad.append(name)
            else:
                r = worst_ratio(got, want, tol[name])
                worst = max(worst, r)
                if r > 1e-3:
                    bad.append("%s(%.3g)" % (name, r))
            if name in tol and tol[name] != tolerance_of(want):
                bad.append(name + ":tolerance-rule")
        print("sample %-40s bytes-identical-rewrite=%s worst-ratio=%.2e %s" %
              (fn, same_bytes, worst, "OK" if not bad and same_bytes else "MISMATCH " + ",".join(bad)))
        ok = ok and not bad and same_bytes
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--check-samples", metavar="DIR", help="verify the writer/reference against sample fixtures")
    ap.add_argument("--only", default=None, help="substring filter on case names (debugging)")
    args = ap.parse_args()

    if args.check_samples:
        ok = check_samples(args.check_samples)
        print("samples:", "OK" if ok else "MISMATCH")
        if not ok:
            return 1

    os.makedirs(args.out, exist_ok=True)
    seen = set()
    per_op = OrderedDict()
    total = 0
    digest = hashlib.sha256()
    length_cases_caught = 0
    for build in CASES:
        c, g = build()
        if args.only and args.only not in c.name:
            continue
        assert c.name not in seen, c.name
        assert c.name.startswith(c.op + "_"), c.name
        seen.add(c.name)
        blob, tensors, meta, checks = build_fixture(c, g)
        if c.length_case and checks.get("f64_ratio", 0.0) > 1.0 and checks.get("rois_f32_ne_f64", 0) > 0:
            length_cases_caught += 1
        path = os.path.join(args.out, c.name + ".safetensors")
        with open(path, "wb") as f:
            f.write(blob)
        verify_file(path, tensors, meta)
        total += len(blob)
        digest.update(c.name.encode() + b"\0" + blob)
        cnt, size = per_op.get(c.op, (0, 0))
        per_op[c.op] = (cnt + 1, size + len(blob))
        info = " ".join("%s=%s" % (k, ("%.3f" % v) if isinstance(v, float) else v) for k, v in checks.items())
        print("%-52s %8d B  %s" % (c.name, len(blob), info))

    if not args.only and length_cases_caught == 0:
        raise AssertionError("no RoI-length case gives another result in float64 than in float32")
    stale = sorted(f for f in os.listdir(args.out) if f.endswith(".safetensors") and f[:-12] not in seen)
    if stale and not args.only:
        print("WARNING: files not produced by this script:", ", ".join(stale))
    print()
    print("%-20s %6s %10s" % ("op", "cases", "bytes"))
    for op, (cnt, size) in per_op.items():
        print("%-20s %6d %10d" % (op, cnt, size))
    print("%-20s %6d %10d  (%.2f MiB)" % ("total", sum(c for c, _ in per_op.values()), total, total / 2 ** 20))
    print("reference:", REFERENCE)
    print("reference of the roi_*_f32_* cases:", reference_f32("roi_pool / roi_align"))
    print("RoI-length cases that float64 arithmetic fails:", length_cases_caught)
    print("sha256 of all fixtures:", digest.hexdigest())
    return 0


if __name__ == "__main__":
    sys.exit(main())
